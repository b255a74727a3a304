"""Measure a model's training or inference speed on random in-memory data.

The yardstick every speed goal uses: no disk, no decoding, just the model's
step. Warm-up steps (tracing, oneDNN kernel selection) are excluded and the
median step is reported, so one slow step from a busy machine does not move it.
Each model row also gives the GFLOP/s it achieved and that as a fraction of a
large matmul's in the same process and precision (``ceiling.py``), so a number
says how far from the machine's limit it is.
"""

from __future__ import annotations

import gc
import statistics
import time

import keras
import numpy as np

from kerasimg.benchmarks.ceiling import MatmulCeiling, matmul_ceiling
from kerasimg.errors import UserError
from kerasimg.models import build_classifier, count_flops, get_backbone
from kerasimg.serving.formats import SAVEDMODEL
from kerasimg.training.precision import dtype_policy, resolve_precision
from kerasimg.training.recipe import compile_classifier

# serve: an exported file in its own runtime (the SavedModel's predict_images signature, loaded with
# plain TensorFlow, or the ONNX/LiteRT files of --format). input: the tf.data pipeline alone
# (decode, resize, the --augment of training) on real files, no model.
MODES = ("train", "frozen", "infer", "serve", "input")
# FLOPs of one step per forward pass: a full train step runs the forward pass, the gradient with
# respect to activations and the one with respect to weights (each about a forward's cost);
# a frozen backbone only runs forward (the head's backward is negligible).
FORWARDS_PER_STEP = {"train": 3, "frozen": 1, "infer": 1, "serve": 1}


def measure(
    backbone: str,
    mode: str,
    image_size: int | None = None,
    batch_size: int = 32,
    steps: int = 5,
    warmup: int = 2,
    num_classes: int = 10,
    seed: int = 0,
    precision: str = "float32",
    data: str = "scenes",
    fold_bn: bool = False,
    train_bn: bool = False,
    augment: str = "flip",
) -> dict:
    """One row of the benchmark table for ``backbone`` in ``mode`` (``serve``: the SavedModel).

    ``augment`` is what ``mode="input"`` applies, as ``fit --augment`` would.
    """
    if mode not in MODES:
        raise UserError(f"--mode must be one of {MODES}. Received: mode={mode!r}")
    if mode == "input":
        _check_steps(steps, warmup)
        spec = get_backbone(backbone)
        return _input_row(
            spec.name, data, int(image_size or spec.image_size), batch_size, steps, warmup, seed, augment
        )
    if mode == "serve":
        (row,) = measure_serving(
            backbone, [SAVEDMODEL], image_size, [batch_size], steps, warmup, num_classes, seed, precision
        )
        return row
    (row,) = measure_variants(
        backbone,
        mode,
        image_size,
        batch_size,
        steps,
        warmup,
        num_classes,
        seed,
        [precision],
        [fold_bn],
        train_bn,
    )
    return row


def measure_variants(
    backbone: str,
    mode: str,
    image_size: int | None = None,
    batch_size: int = 32,
    steps: int = 5,
    warmup: int = 2,
    num_classes: int = 10,
    seed: int = 0,
    precisions: list[str] | tuple[str, ...] = ("float32",),
    fold_bn: list[bool] | tuple[bool, ...] = (False,),
    train_bn: bool = False,
) -> list[dict]:
    """Rows for every precision x BN folding of a ``train``, ``frozen`` or ``infer`` step, timed interleaved.

    One model per precision, one compiled graph per folding (both share the model's
    variables); the step functions take turns (A B A B ...), so a shared machine's
    changing load falls on every variant alike and their ratios hold. ``train`` freezes
    as ``fit``'s ``full`` schedule does (BatchNorm frozen unless ``train_bn``), ``frozen``
    as its linear probe.
    """
    from kerasimg.models.batchnorm_folding import batchnorm_compute_model
    from kerasimg.training.schedules import ALL, HEAD, Phase, apply_phase

    if mode not in FORWARDS_PER_STEP or mode == "serve":
        raise UserError(f"--mode must be one of train, frozen, infer here. Received: mode={mode!r}")
    _check_steps(steps, warmup)
    spec = get_backbone(backbone)
    size = int(image_size or spec.image_size)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size)
    variants = []
    for policy in dict.fromkeys(resolve_precision(p, spec.name) for p in precisions):
        keras.utils.set_random_seed(seed)
        with dtype_policy(policy):
            model = build_classifier(spec, num_classes, image_size=size, weights="none")
        if mode != "infer":
            apply_phase(model, spec, Phase(0, 1, ALL if mode == "train" else HEAD, 1e-3), train_bn)
        for fold in dict.fromkeys(fold_bn):
            compute = batchnorm_compute_model(model, fold=fold, fuse=fold) if fold else model
            if mode == "infer":
                step = lambda m=compute: m.predict_on_batch(images)  # noqa: E731
            else:
                compile_classifier(compute, 1e-3)
                step = lambda m=compute: m.train_on_batch(images, labels)  # noqa: E731
            variants.append((policy, fold, model, step))
    # The ceiling's matmul in each compute dtype takes its turn with the steps, under the same load.
    dtypes = dict.fromkeys(keras.DTypePolicy(policy).compute_dtype for policy, *_ in variants)
    ceilings = {dtype: MatmulCeiling(dtype) for dtype in dtypes}
    medians = _median_steps([step for *_, step in variants], steps, warmup, between=ceilings.values())
    rows = []
    for (policy, fold, model, _), median in zip(variants, medians):
        ceiling = ceilings[keras.DTypePolicy(policy).compute_dtype].gflop_per_sec
        row = _row(spec.name, mode, size, batch_size, policy, median, model, "keras", ceiling)
        row["fold_bn"] = fold
        rows.append(row)
    return rows


def _check_steps(steps: int, warmup: int) -> None:
    if steps < 1 or warmup < 0:
        raise UserError(f"--steps must be >= 1 and --warmup >= 0. Received: steps={steps}, warmup={warmup}")


def _median_steps(step_functions, steps: int, warmup: int, between=()) -> list[float]:
    """Median seconds of each function's step, calling them in turn, warm-up rounds untimed.

    ``between``: ceilings whose matmuls run a round after each round of steps.
    """
    times = [[] for _ in step_functions]
    for i in range(warmup + steps):
        for timed, step in zip(times, step_functions):
            start = time.perf_counter()
            step()
            if i >= warmup:
                timed.append(time.perf_counter() - start)
        for ceiling in between:
            ceiling.run()
    return [statistics.median(t) for t in times]


def _median_step(step, steps: int, warmup: int) -> float:
    (median,) = _median_steps([step], steps, warmup)
    return median


def _row(backbone, mode, size, batch_size, precision, median, model, format_name, ceiling=None) -> dict:
    row = {
        "backbone": backbone,
        "mode": mode,
        "format": format_name,
        "image_size": size,
        "batch_size": batch_size,
        "precision": precision,
        "images_per_sec": round(batch_size / median, 2),
        "step_seconds_median": round(median, 4),
        "params": int(model.count_params()),
    }
    row.update(ceiling_columns(mode, model, batch_size / median, precision, ceiling))
    return row


def ceiling_columns(
    mode: str, model: keras.Model, images_per_sec: float, precision: str, ceiling: float | None = None
) -> dict:
    """Step FLOPs per image, achieved GFLOP/s, the matmul ceiling in ``precision`` and the fraction of it.

    ``ceiling`` (GFLOP/s) when it was timed beside the model's steps; else measured once now.
    """
    flops = FORWARDS_PER_STEP[mode] * count_flops(model)
    achieved = flops * images_per_sec / 1e9
    ceiling = ceiling or matmul_ceiling(keras.DTypePolicy(precision).compute_dtype)
    return {
        "step_flops_per_image": flops,
        "gflop_per_sec": round(achieved, 2),
        "ceiling_gflop_per_sec": round(ceiling, 1),
        "of_ceiling": round(achieved / ceiling, 4),
    }


def measure_serving(
    backbone: str,
    formats: list[str],
    image_size: int | None = None,
    batch_sizes: tuple[int, ...] | list[int] = (32,),
    steps: int = 5,
    warmup: int = 2,
    num_classes: int = 10,
    seed: int = 0,
    precision: str = "float32",
) -> list[dict]:
    """``serve`` rows, one per format and batch size: one export with every format, each timed in its runtime.

    The model has random weights, so the int8 file is kept whatever its top-1 agreement
    (speed, not accuracy, is measured here; ``export`` holds a trained model to the bar).
    A ``mixed_bfloat16`` precision times the files that compute in bfloat16: a SavedModel
    exported with ``precision="bfloat16"`` (its graph in bfloat16) and the OpenVINO file with
    its CPU plugin in bfloat16; the other formats have no bfloat16 row.
    """
    import tempfile

    from kerasimg.serving.bfloat16 import cpu_computes_bfloat16
    from kerasimg.serving.export import export_model
    from kerasimg.serving.formats import parse_formats
    from kerasimg.serving.runtimes import BFLOAT16_FORMATS, load_runtime

    _check_steps(steps, warmup)
    formats = parse_formats(formats)
    spec = get_backbone(backbone)
    size = int(image_size or spec.image_size)
    policy = resolve_precision(precision, spec.name)
    bfloat16 = policy == "mixed_bfloat16"
    if bfloat16 and not cpu_computes_bfloat16():
        raise UserError(
            "bench --mode serve in mixed_bfloat16 times files computing in bfloat16, and this CPU has no "
            "bfloat16 instructions (AVX512-BF16 or AMX); use --precision float32 for serve rows here."
        )
    keras.utils.set_random_seed(seed)
    model = build_classifier(spec, num_classes, image_size=size, weights="none")
    with tempfile.TemporaryDirectory(prefix="kerasimg-bench-") as folder:
        path = export_model(
            model,
            [f"class{i}" for i in range(num_classes)],
            size,
            "bench",
            folder,
            formats=formats,
            min_int8_agreement=0.0,
            precision="float32",
        )
        if bfloat16 and SAVEDMODEL in formats:  # a SavedModel's precision is its graph's: a second export
            bfloat16_savedmodel = export_model(
                model, [f"class{i}" for i in range(num_classes)], size, "bench", folder, precision="bfloat16"
            )
        rng = np.random.default_rng(seed)
        rows = []
        for name in formats:
            if bfloat16 and name not in BFLOAT16_FORMATS:
                continue
            if bfloat16:
                folder_of = bfloat16_savedmodel if name == SAVEDMODEL else path
                runtime = load_runtime(folder_of, name, "bfloat16")
            else:
                runtime = load_runtime(path, name, "float32")
            for batch_size in batch_sizes:
                images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
                median = _median_step(lambda: runtime(images), steps, warmup)  # noqa: B023
                rows.append(_row(spec.name, "serve", size, batch_size, policy, median, model, name))
            runtime = None  # a compiled runtime can hold gigabytes at 224 px: one at a time
            gc.collect()
    return rows


def _input_row(
    backbone: str, data: str, size: int, batch_size: int, steps: int, warmup: int, seed: int, augment: str
) -> dict:
    """Training-pipeline throughput: decode, resize, shuffle and augment real files, batched.

    Timed over ``steps`` consecutive batches (prefetching makes single batches
    uneven), so it reads directly against the model's train images/s.
    """
    from kerasimg.data import image_dataset, load_data
    from kerasimg.data.augment import parse_augment

    loaded = load_data(data, seed=seed, log=lambda *_: None)
    # MixUp and CutMix mix one-hot labels, as fit gives them.
    num_classes = loaded.num_classes if parse_augment(augment).mixes_labels else None
    dataset = image_dataset(
        loaded.train, size, batch_size, training=True, augment=augment, seed=seed, num_classes=num_classes
    )
    dataset = iter(dataset.repeat())
    for _ in range(warmup):
        next(dataset)
    start = time.perf_counter()
    for _ in range(steps):
        next(dataset)
    seconds = (time.perf_counter() - start) / steps
    return {
        "backbone": backbone,
        "mode": "input",
        "format": "-",
        "augment": augment,
        "image_size": size,
        "batch_size": batch_size,
        "precision": "-",
        "images_per_sec": round(batch_size / seconds, 2),
        "step_seconds_median": round(seconds, 4),
        "params": 0,
    }
