"""Export a trained classifier as a versioned SavedModel that TF Serving loads.

The SavedModel (written with ``keras.export.ExportArchive``) has two signatures:
``serving_default`` takes ``image_bytes`` (JPEG/PNG/BMP/GIF bytes) and
``predict_images`` takes raw 0-255 pixels; both return ``probabilities``,
``classes`` (top-1 name), ``scores`` and the top-k names and scores. Class names
go in ``assets/labels.txt`` and warm-up requests in ``assets.extra/``. The export
is written to a temporary folder, loaded back and checked against the Keras model,
and only then renamed into ``<zoo>/<name>/<next version>/``: a failed or
interrupted export leaves no version folder behind.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasimg import selection
from kerasimg.errors import UserError
from kerasimg.serving.signatures import BYTES_INPUT, PIXELS_INPUT, decode_batch, serving_functions
from kerasimg.serving.warmup import write_warmup_requests
from kerasimg.serving.zoo import DEFAULT_ZOO, Zoo, check_name

WARMUP_IMAGES = 3


def _sample_jpegs(image_size: int, count: int, seed: int = 0) -> list[bytes]:
    """Small synthetic JPEGs for warm-up and verification."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        images.append(tf.io.encode_jpeg(pixels, quality=95).numpy())
    return images


def export_model(
    model: keras.Model,
    class_names: list[str],
    image_size: int,
    name: str,
    zoo: str | Path = DEFAULT_ZOO,
    metadata: dict | None = None,
    top_k: int = 3,
) -> Path:
    """Write ``<zoo>/<name>/<next version>/`` and index it; returns the version folder."""
    check_name(name)
    if model.output_shape[-1] != len(class_names):
        raise UserError(
            f"The model has {model.output_shape[-1]} outputs but {len(class_names)} class names were given."
        )
    zoo = Zoo(zoo)
    folder = zoo.root / name
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    try:
        serving_default, predict_images = serving_functions(model, class_names, image_size, top_k)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serving_default)
        archive.add_endpoint("predict_images", predict_images)
        archive.write_out(str(staging), verbose=False)
        (staging / "assets").mkdir(exist_ok=True)
        (staging / "assets" / "labels.txt").write_text("\n".join(class_names) + "\n", encoding="utf-8")
        samples = _sample_jpegs(image_size, WARMUP_IMAGES)
        write_warmup_requests(staging / "assets.extra" / "tf_serving_warmup_requests", name, samples)
        verify_export(staging, model, image_size, samples)
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
        "path": str(target),
        "exported": datetime.datetime.now().isoformat(timespec="seconds"),
        "signatures": {"serving_default": BYTES_INPUT, "predict_images": PIXELS_INPUT},
    }
    entry.setdefault("parameters", int(model.count_params()))
    zoo.add(entry)
    return target


def verify_export(path: Path, model: keras.Model, image_size: int, samples: list[bytes]) -> None:
    """Load the SavedModel back and check both signatures against the Keras model."""
    loaded = tf.saved_model.load(str(path))
    image_bytes = tf.constant(samples[:2])
    pixels = decode_batch(image_bytes, image_size)
    expected = keras.ops.convert_to_numpy(model(pixels, training=False)).astype("float32")
    from_bytes = loaded.signatures["serving_default"](**{BYTES_INPUT: image_bytes})["probabilities"].numpy()
    from_pixels = loaded.signatures["predict_images"](**{PIXELS_INPUT: pixels})["probabilities"].numpy()
    for got, signature in ((from_bytes, "serving_default"), (from_pixels, "predict_images")):
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise RuntimeError(
                f"The exported {signature} disagrees with the Keras model (max difference "
                f"{np.max(np.abs(got - expected)):.2e}); the export was not kept."
            )


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


def export_run(run_dir: str | Path, name: str | None = None, zoo: str | Path = DEFAULT_ZOO) -> Path:
    """Export the best model of a finished ``kerasimg.fit`` run with its metrics in the index."""
    from kerasimg.models import load_classifier

    run_dir = Path(run_dir)
    for required in ("config.json", "model.keras"):
        if not (run_dir / required).exists():
            raise UserError(f"{run_dir} is not a finished kerasimg run: {required} is missing.")
    config_text = (run_dir / "config.json").read_text(encoding="utf-8")
    config = json.loads(config_text)
    metrics = {}
    if (run_dir / "metrics.json").exists():
        saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        metrics = {k: saved[k] for k in ("test_accuracy", "test_loss", "best_epoch") if k in saved}
        metrics["macro_f1"] = float(np.mean([c["f1"] for c in saved.get("per_class", {}).values()] or [0]))
        metrics[selection.METRICS_KEY] = selection.selected_on_test(saved, config)
    model = load_classifier(run_dir / "model.keras")
    metadata = {
        "backbone": config.get("backbone"),
        "data": config.get("data"),
        "schedule": config.get("schedule"),
        "metrics": metrics,
        "parameters": config.get("parameters", {}).get("total"),
        "flops_per_image": config.get("flops_per_image"),
        "run": str(run_dir.resolve()),
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
    }
    return export_model(
        model, config["class_names"], int(config["image_size"]), name or config["backbone"], zoo, metadata
    )
