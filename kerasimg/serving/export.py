"""Export a trained classifier as a versioned SavedModel that TF Serving loads.

The SavedModel (written with ``keras.export.ExportArchive``) has two signatures:
``serving_default`` takes ``image_bytes`` (JPEG/PNG/BMP/GIF bytes) and
``predict_images`` takes raw 0-255 pixels; both return ``probabilities``,
``classes`` (top-1 name), ``scores`` and the top-k names and scores. Class names
go in ``assets/labels.txt`` and warm-up requests in ``assets.extra/``. The export
is written to a temporary folder, loaded back and checked against the Keras model,
and only then renamed into ``<zoo>/<name>/<next version>/``: a failed or
interrupted export leaves no version folder behind. Other formats (ONNX, LiteRT
float/float16/int8; ``kerasimg.serving.formats``) are converted and verified into
the same temporary folder first, beside the SavedModel, with ``labels.txt``.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasimg import selection
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.errors import ArgumentError, UserError
from kerasimg.files import make_temp_dir
from kerasimg.models.batchnorm_folding import folded_for_inference
from kerasimg.names import check_class_names
from kerasimg.serving.bfloat16 import (
    check_bfloat16_export,
    choose_savedmodel_precision,
    in_float32,
    wants_bfloat16,
    write_serves,
)
from kerasimg.serving.convert import CheckImages, add_formats
from kerasimg.serving.formats import (
    DEFAULT_CALIBRATION_IMAGES,
    LABELS_FILE,
    MIN_INT8_AGREEMENT,
    MIN_INT8_CHECK_IMAGES,
    SAVEDMODEL,
    parse_formats,
    write_labels,
)
from kerasimg.serving.formats import check_installed as check_format_packages
from kerasimg.serving.signatures import BYTES_INPUT, PIXELS_INPUT, decode_batch, serving_functions
from kerasimg.serving.warmup import write_warmup_requests
from kerasimg.serving.zoo import DEFAULT_ZOO, Zoo
from kerasimg.training.recipe import TTA_MODES

WARMUP_IMAGES = 3
# A bfloat16 graph against the same bfloat16 Keras model: TensorFlow fuses the exported graph's
# ops differently from eager calls, and each rounding to bfloat16 (8 bits) can land elsewhere.
BFLOAT16_TOLERANCE = 3e-2


def _sample_jpegs(image_size: int, count: int, seed: int = 0) -> list[bytes]:
    """Small synthetic JPEGs for warm-up and verification."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        images.append(tf.io.encode_jpeg(pixels, quality=95).numpy())
    return images


def synthetic_check_images(image_size: int, formats: list[str], precision: str = "auto") -> CheckImages:
    """What formats are checked on without a run: a few synthetic images, or
    ``MIN_INT8_CHECK_IMAGES`` when an agreement is to be measured (an int8 file's, or a
    SavedModel's or OpenVINO file's in bfloat16)."""
    agreement = (
        "litert-int8" in formats
        or ("openvino" in formats and precision != "float32")
        or wants_bfloat16(precision)
    )
    count = MIN_INT8_CHECK_IMAGES if agreement else WARMUP_IMAGES
    pixels = decode_batch(tf.constant(_sample_jpegs(image_size, count)), image_size)
    return CheckImages.from_array(pixels, f"{count} synthetic images")


def export_model(
    model: keras.Model,
    class_names: list[str],
    image_size: int,
    name: str,
    zoo: str | Path = DEFAULT_ZOO,
    metadata: dict | None = None,
    top_k: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: str | list[str] = SAVEDMODEL,
    images: CheckImages | None = None,
    min_int8_agreement: float = MIN_INT8_AGREEMENT,
    tta: str = "none",
    thresholds: list[float] | None = None,
    precision: str = "auto",
) -> Path:
    """Write ``<zoo>/<name>/<next version>/`` and index it; returns the version folder.

    ``thresholds`` (one per class) mark a multi-label model: both signatures also return
    ``predicted``, each class's probability at or above its threshold, and the index records them.

    ``tta="flip"`` builds test-time augmentation into both signatures (each image and
    its mirror, probabilities averaged); the index records it under ``tta``. Only the
    SavedModel's signatures can hold it, so it is refused with other formats.

    ``serving_default`` refuses images whose header claims more than ``max_pixels``
    pixels before decoding them; the limit is recorded in the index. ``formats``
    adds ONNX/LiteRT/OpenVINO files beside the SavedModel, each calibrated and checked on
    ``images`` (default: a few synthetic images; ``export_run`` passes the run's splits);
    an int8 file whose top-1 matches the Keras model's on less than ``min_int8_agreement``
    of the test images fails the export. ``precision`` is what the SavedModel computes in
    (``kerasimg.serving.bfloat16``) and the OpenVINO file serves in
    (``kerasimg.serving.convert.choose_precision``), each chosen on the test images for ``auto``.
    """
    check_bfloat16_export(precision)
    zoo = Zoo(zoo)
    folder = zoo.model_dir(name)
    zoo.entries()  # a damaged index is refused before a version is published that it could not list
    check_class_names(list(class_names))
    formats = parse_formats(formats)
    check_tta(tta, formats)
    check_format_packages(formats)
    if model.output_shape[-1] != len(class_names):
        raise UserError(
            f"The model has {model.output_shape[-1]} outputs but {len(class_names)} class names were given."
        )
    if thresholds is not None and len(thresholds) != len(class_names):
        raise UserError(f"{len(thresholds)} thresholds were given for {len(class_names)} classes.")
    folder.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(folder, ".export-")
    try:
        # The float32 function (a run trained in bfloat16 loads back computing in it), then conv ->
        # BN pairs as one convolution with fixed weights: what every runtime computes (verified
        # below against ``model``).
        model = in_float32(model)
        served = folded_for_inference(model)
        if images is None:
            images = synthetic_check_images(image_size, formats, precision)
        # TF Serving has no precision switch: a SavedModel computes in the precision its graph has.
        computed, savedmodel_facts = choose_savedmodel_precision(model, served, images.test(), precision)
        serving_default, predict_images = serving_functions(
            computed, class_names, image_size, top_k, max_pixels, tta, thresholds
        )
        # Not ``archive.track(computed)``: on TensorFlow that stores every weight twice, as the
        # tracked Keras variables and again as the tf.Variables the endpoints capture (Keras issue
        # 23553: twice the file and twice the memory in TF Serving). The endpoints' own are enough.
        archive = keras.export.ExportArchive()
        archive.add_endpoint("serving_default", serving_default)
        archive.add_endpoint("predict_images", predict_images)
        archive.write_out(str(staging), verbose=False)
        (staging / "assets").mkdir(exist_ok=True)
        write_labels(staging / "assets" / LABELS_FILE, class_names)
        samples = _sample_jpegs(image_size, WARMUP_IMAGES)
        write_warmup_requests(staging / "assets.extra" / "tf_serving_warmup_requests", name, samples)
        write_serves(staging, savedmodel_facts["serves"])
        if savedmodel_facts["serves"] == "bfloat16":  # the graph against the copy measured above
            verify_export(staging, computed, image_size, samples, tta, tolerance=BFLOAT16_TOLERANCE)
        else:
            verify_export(staging, model, image_size, samples, tta)
        files = {SAVEDMODEL: {"bytes": _folder_bytes(staging), **savedmodel_facts}}
        write_labels(staging / LABELS_FILE, class_names)
        files.update(add_formats(model, staging, formats[1:], images, min_int8_agreement, served, precision))
        version = _move_into_place(staging, zoo, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target = folder / str(version)
    entry = {
        **(metadata or {}),
        "name": name,
        "version": version,
        "class_names": list(class_names),
        "image_size": image_size,
        "max_pixels": max_pixels,
        "path": str(target),
        "exported": datetime.datetime.now().isoformat(timespec="seconds"),
        "signatures": {"serving_default": BYTES_INPUT, "predict_images": PIXELS_INPUT},
        "tta": tta,
        "formats": files,
        "task": "single" if thresholds is None else "multilabel",
    }
    if thresholds is not None:
        entry["thresholds"] = dict(zip(class_names, map(float, thresholds)))
    entry.setdefault("parameters", int(model.count_params()))
    zoo.add(entry)
    return target


def check_tta(tta: str, formats: list[str]) -> None:
    """``tta`` is none or flip; flip goes with the SavedModel alone (other formats hold the bare model)."""
    if tta not in TTA_MODES:
        raise ArgumentError("tta", f"must be one of {', '.join(TTA_MODES)}", tta)
    others = [f for f in formats if f != SAVEDMODEL]
    if tta != "none" and others:
        raise ArgumentError(
            "tta",
            f"is built into the SavedModel's signatures only, not into {', '.join(others)}; "
            "export those without it",
            tta,
        )


def verify_export(
    path: Path,
    model: keras.Model,
    image_size: int,
    samples: list[bytes],
    tta: str = "none",
    tolerance: float = 1e-5,
) -> None:
    """Load the SavedModel back and check both signatures against the Keras model (and its ``tta``)
    within ``tolerance`` (absolute, plus 1e-4 relative)."""
    loaded = tf.saved_model.load(str(path))
    image_bytes = tf.constant(samples[:2])
    pixels = decode_batch(image_bytes, image_size)
    expected = keras.ops.convert_to_numpy(model(pixels, training=False)).astype("float32")
    if tta == "flip":
        mirrored = keras.ops.convert_to_numpy(model(tf.image.flip_left_right(pixels), training=False))
        expected = (expected + mirrored.astype("float32")) / 2
    from_bytes = loaded.signatures["serving_default"](**{BYTES_INPUT: image_bytes})["probabilities"].numpy()
    from_pixels = loaded.signatures["predict_images"](**{PIXELS_INPUT: pixels})["probabilities"].numpy()
    for got, signature in ((from_bytes, "serving_default"), (from_pixels, "predict_images")):
        if not np.allclose(got, expected, rtol=1e-4, atol=tolerance):
            raise RuntimeError(
                f"The exported {signature} disagrees with the Keras model (max difference "
                f"{np.max(np.abs(got - expected)):.2e}); the export was not kept."
            )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _move_into_place(staging: Path, zoo: Zoo, name: str) -> int:
    """Rename ``staging`` to the next free version; a concurrent export that wins makes us take the next."""
    while True:
        version = max(zoo.versions(name), default=0) + 1
        try:
            os.rename(staging, zoo.root / name / str(version))
            return version
        except OSError:
            if not (zoo.root / name / str(version)).exists():
                raise


def export_run(
    run_dir: str | Path,
    name: str | None = None,
    zoo: str | Path = DEFAULT_ZOO,
    *,
    allow_unfinished: bool = False,
    formats: str | list[str] = SAVEDMODEL,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    min_int8_agreement: float = MIN_INT8_AGREEMENT,
    tta: str = "none",
    precision: str = "auto",
) -> Path:
    """Export the best model of a finished ``kerasimg.fit`` run with its metrics in the index.

    ``tta="flip"`` builds flip test-time augmentation into the signatures (see ``export_model``).

    A run that was stopped before its evaluation is refused unless ``allow_unfinished``;
    it then enters the zoo marked as unevaluated. ``formats`` beyond the SavedModel are
    checked on the run's validation split; int8 is calibrated on ``calibration_images``
    training images and judged on the test split.
    """
    formats = parse_formats(formats)
    check_tta(tta, formats)
    check_format_packages(formats)
    check_bfloat16_export(precision)  # before the run's images are read
    if calibration_images < 1:
        raise ArgumentError("calibration_images", "must be at least 1", calibration_images)
    if keras.backend.backend() != "tensorflow":
        return _export_under_tensorflow(
            run_dir, name, zoo, allow_unfinished, formats, calibration_images, tta, precision
        )
    from kerasimg.models import count_flops, load_classifier
    from kerasimg.training.run import Run

    run = Run(run_dir)
    config = run.read_config()
    run.require_model()
    if not run.finished and not allow_unfinished:
        raise UserError(
            f"The run in {run.path} was stopped before its evaluation, so it has no test metrics. "
            f"Finish it with `python -m kerasimg.fit --resume {run.path}`, or pass --allow-unfinished "
            "to export it marked as unevaluated."
        )
    metrics = {}
    if run.finished:
        saved = run.read_metrics()
        metrics = {
            k: saved[k] for k in ("test_accuracy", "test_loss", "best_epoch", "test_map") if k in saved
        }
        metrics["macro_f1"] = float(np.mean([c["f1"] for c in saved.get("per_class", {}).values()] or [0]))
        metrics[selection.METRICS_KEY] = selection.selected_on_test(saved, config["arguments"])
    model = load_classifier(run.model_path)
    arguments, resolved = config["arguments"], config["resolved"]
    metadata = {
        "backbone": arguments.get("backbone"),
        "data": arguments.get("data"),
        "schedule": resolved.get("schedule"),
        "metrics": metrics,
        "evaluated": run.finished,
        "parameters": config.get("parameters", {}).get("total"),
        # A run trained under JAX (multihost) could not count them: counted here, under TensorFlow.
        "flops_per_image": config.get("flops_per_image") or count_flops(model),
        "run": str(run.path.resolve()),
        "config_sha256": hashlib.sha256(run.config_path.read_bytes()).hexdigest(),
    }
    image_size = int(resolved["image_size"])
    images = None
    if len(formats) > 1 or wants_bfloat16(precision):
        images = run_images(arguments, image_size, calibration_images)
        metadata["calibration_images"] = calibration_images if "litert-int8" in formats else None
    thresholds = None
    if arguments.get("task") == "multilabel":
        chosen = run.read_metrics().get("thresholds", {}) if run.finished else {}
        # An unevaluated multi-label run has no thresholds chosen on validation: 0.5 for every class.
        thresholds = [float(chosen.get(name, 0.5)) for name in config["class_names"]]
    return export_model(
        model,
        config["class_names"],
        image_size,
        name or arguments["backbone"],
        zoo,
        metadata,
        max_pixels=int(arguments.get("max_pixels", DEFAULT_MAX_PIXELS)),
        formats=formats,
        images=images,
        min_int8_agreement=min_int8_agreement,
        tta=tta,
        thresholds=thresholds,
        precision=precision,
    )


def _export_under_tensorflow(
    run_dir, name, zoo, allow_unfinished, formats, calibration_images, tta, precision
) -> Path:
    """Export in a fresh TensorFlow-backend process (``python -m kerasimg.export``).

    Keras fixes its backend at import; under JAX (a ``multihost`` run) a SavedModel
    would go through jax2tf and hold ``XlaCallModule`` ops, which TF Serving handles
    badly. The ``.keras`` file reloads under TensorFlow, so the export is the same as
    for a run trained there.
    """
    command = [sys.executable, "-m", "kerasimg.export", str(run_dir), "--zoo", str(zoo)]
    command += ["--format", ",".join(formats), "--calibration-images", str(calibration_images), "--tta", tta]
    command += ["--precision", precision]
    command += (["--name", name] if name else []) + (["--allow-unfinished"] if allow_unfinished else [])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION_")}
    done = subprocess.run(
        command, env={**environment, "KERAS_BACKEND": "tensorflow"}, capture_output=True, text=True
    )
    lines = done.stdout.splitlines()
    if done.returncode:
        problem = (done.stderr.strip().splitlines() or ["no message"])[-1].removeprefix("error: ")
        raise UserError(f"The export under TensorFlow failed: {problem}")
    exported = next(line for line in lines if line.startswith("Exported "))
    return Path(exported.removeprefix("Exported ").split(" (verified")[0])


def run_images(
    arguments: dict, image_size: int, calibration_images: int, batch_size: int = 32
) -> CheckImages:
    """The run's own splits, rebuilt from its arguments: training images to calibrate, val and test to check.

    The calibration sample is ``calibration_images`` training files drawn with the
    run's seed, so the same run calibrates the same way twice.
    """
    from kerasimg.data import image_dataset, load_data
    from kerasimg.data.sources import run_data_settings
    from kerasimg.data.splits import FileSplit

    data = load_data(arguments.get("data", "scenes"), **run_data_settings(arguments), log=lambda *_: None)
    train = data.train
    if isinstance(train, FileSplit) and len(train) > calibration_images:
        rng = np.random.default_rng(int(arguments.get("seed", 0)))
        chosen = sorted(rng.choice(len(train), calibration_images, replace=False))
        train = train.subset(chosen)

    def batches(split, limit=None):
        def iterate():
            dataset = image_dataset(split, image_size, batch_size, training=False).map(lambda x, y: x)
            if limit is not None:
                dataset = dataset.unbatch().take(limit).batch(batch_size)
            return dataset.as_numpy_iterator()

        return iterate

    def labelled_batches(split, with_labels: bool):
        def iterate():
            dataset = image_dataset(split, image_size, batch_size, training=False)
            for pixels, labels in dataset.as_numpy_iterator():
                yield pixels, labels if with_labels else None

        return iterate

    validation = data.val if len(data.val) else data.test
    return CheckImages(
        calibration=batches(train, calibration_images),
        validation=batches(validation),
        # (pixels, labels) pairs; a multi-label run's accuracy is not one class per image: no labels.
        test=labelled_batches(data.test, with_labels=not data.multilabel),
        source=f"the run's {len(validation)} validation and {len(data.test)} test images",
    )
