"""Measure a model's training or inference speed on random in-memory data.

The yardstick every speed goal uses: no disk, no decoding, just the model's
step. Warm-up steps (tracing, oneDNN kernel selection) are excluded and the
median step is reported, so one slow step from a busy machine does not move it.
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np

from kerasimg.errors import UserError
from kerasimg.models import backbone_of, build_classifier, get_backbone
from kerasimg.serving.formats import SAVEDMODEL
from kerasimg.training.precision import dtype_policy, resolve_precision
from kerasimg.training.recipe import compile_classifier

# serve: an exported file in its own runtime (the SavedModel's predict_images signature, loaded with
# plain TensorFlow, or the ONNX/LiteRT files of --format). input: the tf.data pipeline alone
# (decode, resize, the --augment of training) on real files, no model.
MODES = ("train", "frozen", "infer", "serve", "input")


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
    augment: str = "flip",
) -> dict:
    """One row of the benchmark table for ``backbone`` in ``mode`` (``serve``: the SavedModel).

    ``augment`` is what ``mode="input"`` applies, as ``fit --augment`` would.
    """
    if mode not in MODES:
        raise UserError(f"--mode must be one of {MODES}. Received: mode={mode!r}")
    if steps < 1 or warmup < 0:
        raise UserError(f"--steps must be >= 1 and --warmup >= 0. Received: steps={steps}, warmup={warmup}")
    spec = get_backbone(backbone)
    size = int(image_size or spec.image_size)
    if mode == "input":
        return _input_row(spec.name, data, size, batch_size, steps, warmup, seed, augment)
    if mode == "serve":
        (row,) = measure_serving(
            backbone, [SAVEDMODEL], size, [batch_size], steps, warmup, num_classes, seed, precision
        )
        return row
    policy = resolve_precision(precision, spec.name)
    keras.utils.set_random_seed(seed)
    with dtype_policy(policy):
        model = build_classifier(spec, num_classes, image_size=size, weights="none")
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size)
    if mode == "infer":
        step = lambda: model.predict_on_batch(images)  # noqa: E731
    else:
        backbone_of(model).trainable = mode == "train"
        compile_classifier(model, 1e-3)
        step = lambda: model.train_on_batch(images, labels)  # noqa: E731
    median = _median_step(step, steps, warmup)
    return _row(spec.name, mode, size, batch_size, policy, median, model, "keras")


def _median_step(step, steps: int, warmup: int) -> float:
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(backbone, mode, size, batch_size, precision, median, model, format_name) -> dict:
    return {
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
    """
    import tempfile

    from kerasimg.serving.export import export_model
    from kerasimg.serving.formats import parse_formats
    from kerasimg.serving.runtimes import load_runtime

    if steps < 1 or warmup < 0:
        raise UserError(f"--steps must be >= 1 and --warmup >= 0. Received: steps={steps}, warmup={warmup}")
    formats = parse_formats(formats)
    spec = get_backbone(backbone)
    size = int(image_size or spec.image_size)
    policy = resolve_precision(precision, spec.name)
    keras.utils.set_random_seed(seed)
    with dtype_policy(policy):
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
        )
        rng = np.random.default_rng(seed)
        rows = []
        for name in formats:
            runtime = load_runtime(path, name)
            for batch_size in batch_sizes:
                images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
                median = _median_step(lambda: runtime(images), steps, warmup)  # noqa: B023
                rows.append(_row(spec.name, "serve", size, batch_size, policy, median, model, name))
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
