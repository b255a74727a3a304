"""Batched against one-request-per-file prediction, measured in one process on the same files.

``python -m kerasimg.benchmarks.predict_speed [--images 1000] [--backbone small_cnn] [--batch-size 32]``
exports a randomly initialised classifier to a temporary zoo, writes ``--images``
demo-set images, and times ``predict_files`` (the ``--batch-size 1`` path) and
``predict_files_batched`` over them, each after one warm-up call, in turn, so both
see the same machine load: once as the CLI runs them (each loads the SavedModel),
once with the model loaded once. Prints images/s for both, their ratios and the CPU's
vector flags.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from kerasimg.cli import run_cli
from kerasimg.training.precision import cpu_description


def measure(images: int, backbone: str, batch_size: int, image_size: int | None, work: Path) -> dict:
    from kerasimg.data.scenes import ensure_scenes
    from kerasimg.models import build_classifier, get_backbone
    from kerasimg.serving.batch_predict import predict_files_batched
    from kerasimg.serving.export import export_model
    from kerasimg.serving.predict import list_images, predict_files

    size = image_size or get_backbone(backbone).image_size
    root = ensure_scenes(train_per_class=2, test_per_class=1, pred=images, seed=0, root=work / "scenes")
    files = list_images([str(root / "seg_pred")])[:images]
    names = ["buildings", "forest", "glacier", "mountain", "sea", "street"]
    model = build_classifier(backbone, len(names), image_size=size, weights="none")
    model_dir = export_model(model, names, size, "bench", work / "zoo")
    predict_files(model_dir, files[:2])  # warm-ups: graph tracing and the first file reads
    predict_files_batched(model_dir, files[:batch_size], batch_size=batch_size)
    started = time.perf_counter()
    one = predict_files(model_dir, files)
    single = time.perf_counter() - started
    started = time.perf_counter()
    batched_results = predict_files_batched(model_dir, files, batch_size=batch_size)
    batched = time.perf_counter() - started
    # Both paths load the SavedModel per call; timed again with one loaded copy, the ratio is the
    # per-file work alone (what a long-running process or a larger folder sees).
    with _loaded_once(model_dir):
        started = time.perf_counter()
        predict_files(model_dir, files)
        single_warm = time.perf_counter() - started
        started = time.perf_counter()
        predict_files_batched(model_dir, files, batch_size=batch_size)
        batched_warm = time.perf_counter() - started

    agree = sum(
        a.get("top", [[None]])[0][0] == b.get("top", [[None]])[0][0] for a, b in zip(one, batched_results)
    )
    return {
        "images": len(files),
        "image_size": size,
        "single_seconds": single,
        "batched_seconds": batched,
        "speedup": single / batched,
        "single_seconds_loaded": single_warm,
        "batched_seconds_loaded": batched_warm,
        "speedup_loaded": single_warm / batched_warm,
        "same_top1": agree,
    }


@contextlib.contextmanager
def _loaded_once(model_dir: Path):
    """``tf.saved_model.load`` answering from one loaded copy of ``model_dir``."""
    import tensorflow as tf

    real, loaded = tf.saved_model.load, tf.saved_model.load(str(model_dir))
    tf.saved_model.load = lambda path, *a, **k: loaded if Path(path) == model_dir else real(path, *a, **k)
    try:
        yield
    finally:
        tf.saved_model.load = real


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kerasimg.benchmarks.predict_speed", description=__doc__)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    def run() -> int:
        with tempfile.TemporaryDirectory(prefix="kerasimg-predict-bench-") as work:
            r = measure(args.images, args.backbone, args.batch_size, args.image_size, Path(work))
        print(
            f"{r['images']} demo images at {r['image_size']} px, {args.backbone}: one file per request "
            f"{r['single_seconds']:.1f} s ({r['images'] / r['single_seconds']:.0f} images/s); batches of "
            f"{args.batch_size} {r['batched_seconds']:.1f} s "
            f"({r['images'] / r['batched_seconds']:.0f} images/s); "
            f"{r['speedup']:.1f}x faster; same top-1 class for {r['same_top1']}/{r['images']}.\n"
            f"With the SavedModel loaded once: one file per request {r['single_seconds_loaded']:.1f} s, "
            f"batches {r['batched_seconds_loaded']:.1f} s, {r['speedup_loaded']:.1f}x faster.\n"
            f"CPU: {cpu_description()}"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
