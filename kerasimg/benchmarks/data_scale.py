"""``python -m kerasimg.benchmarks.data_scale``: how a fit's start, epochs and memory grow with N files.

Two modes:

* ``fit`` (the default): for each ``--files N``, writes N tiny JPEGs (48 px, in 10
  class folders) and runs ``fit --backbone small_cnn --weights none --image-size 32
  --batch-size 256`` twice in fresh processes: *cold* (an empty verdict store) and
  *warm* (the same store). The OS's file cache is not dropped (that needs root), so
  cold means cold for kerasimg: run it after a reboot or ``echo 3 >
  /proc/sys/vm/drop_caches`` for a cold disk too. Each run reports the seconds
  from launch to its first training step, its seconds per epoch, its total seconds and
  its peak RSS. ``--runs packed`` adds a third: the same files packed once with
  ``kerasimg pack`` (the pack's seconds reported) and a fit that reads the shards.
* ``store``: lists N empty files and times the listing, the keys (one ``stat`` a file),
  writing N verdicts to a fresh store in the batches a check commits, and reading them
  all back from a newly opened store: no image is decoded, so N = 1,000,000 is cheap.

Examples (the measurements of issue 27's goals)::

    python -m kerasimg.benchmarks.data_scale --files 5000 50000 --json data-fit.json
    python -m kerasimg.benchmarks.data_scale --mode store --files 1000000 --json data-store.json

The files are kept under ``--work`` (default ``$KERASIMG_HOME/data-scale``) and reused.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kerasimg.cli import run_cli
from kerasimg.files import kerasimg_home, write_json

CLASSES = 10
_DISTINCT_IMAGES = 64  # distinct JPEGs, written in turn: varied content without encoding N of them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kerasimg.benchmarks.data_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mode", choices=("fit", "store"), default="fit", help="see above")
    p.add_argument("--files", type=int, nargs="+", default=[5000, 50000], help="file counts N to measure")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each fit")
    p.add_argument(
        "--runs",
        nargs="+",
        choices=("cold", "warm", "packed"),
        default=["cold", "warm"],
        help="which fits to time (packed: over a kerasimg pack of the files, the pack timed too)",
    )
    p.add_argument("--verify", choices=("pipeline", "full"), default="pipeline", help="fit's --verify")
    p.add_argument("--work", default=None, help="where the generated files are kept")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--child", nargs=3, metavar=("DATA", "OUT", "LAUNCHED"), help=argparse.SUPPRESS)
    return p


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_images(folder: Path, count: int) -> Path:
    """``count`` 48 px JPEGs in ``CLASSES`` class folders under ``folder`` (kept when complete)."""
    done = folder / ".complete"
    if done.exists():
        return folder
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(_DISTINCT_IMAGES):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
        encoded.append(buffer.getvalue())
    _write_files(folder, count, lambda i: encoded[i % len(encoded)])
    done.write_text("")
    return folder


def make_empty_files(folder: Path, count: int) -> Path:
    """``count`` empty files in ``CLASSES`` class folders under ``folder`` (kept when complete)."""
    done = folder / ".complete"
    if not done.exists():
        _write_files(folder, count, lambda i: b"")
        done.write_text("")
    return folder


def _write_files(folder: Path, count: int, content) -> None:
    for c in range(CLASSES):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with open(folder / f"class{i % CLASSES}" / f"{i:07d}.jpg", "wb") as f:
            f.write(content(i))


class _Timeline:
    """Keras callback: when the first training step began, and each epoch's seconds."""

    def __new__(cls, launched: float):
        import keras

        class Timeline(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.first_step = None
                self.epochs: list[float] = []

            def on_train_batch_begin(self, batch, logs=None):
                if self.first_step is None:
                    self.first_step = time.time() - launched

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.epochs.append(time.perf_counter() - self._started)

        return Timeline()


def _child(data: str, out: str, launched: float, epochs: int, verify: str) -> dict:
    """One fit in this (fresh) process; its timings and peak RSS."""
    from kerasimg.training import FitConfig, fit

    timeline = _Timeline(launched)
    config = FitConfig(
        backbone="small_cnn",
        data=data,
        weights="none",
        epochs=epochs,
        image_size=32,
        batch_size=256,
        out=out,
        verify=verify,
    )
    result = fit(config, callbacks=[timeline], log=lambda *_: None)
    return {
        "first_step_seconds": round(timeline.first_step, 2),
        "epoch_seconds": [round(s, 2) for s in timeline.epochs],
        "total_seconds": round(time.time() - launched, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "test_examples": result.metrics["test_examples"],
        "skipped_files": result.metrics["skipped_files"],
    }


def measure_fit(
    count: int, work: Path, epochs: int, verify: str, runs=("cold", "warm"), log=print
) -> list[dict]:
    """A cold and a warm fit over ``count`` generated JPEGs, each in a fresh process."""
    data = make_images(work / f"jpegs-{count}", count)
    rows = []
    with tempfile.TemporaryDirectory(prefix="data-scale-", dir=work) as scratch:
        env = {**os.environ, "KERASIMG_HOME": str(Path(scratch) / "home")}  # an empty verdict store
        for kind in runs:  # warm: the verdict store the cold run left
            out, report = Path(scratch) / f"run-{kind}", Path(scratch) / f"{kind}.json"
            row = {"mode": "fit", "files": count, "run": kind, "verify": verify}
            source = data
            if kind == "packed":
                source, row["pack_seconds"] = _pack(data, Path(scratch) / "packed", verify, env)
            launched = time.time()
            command = [sys.executable, "-m", "kerasimg.benchmarks.data_scale", "--child"]
            command += [str(source), str(out), repr(launched), "--epochs", str(epochs), "--verify", verify]
            command += ["--json", str(report)]
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            row.update(json.loads(report.read_text()))
            log(_describe(row))
            rows.append(row)
    return rows


def _pack(data: Path, out: Path, verify: str, env: dict) -> tuple[Path, float]:
    """``kerasimg pack`` of ``data`` into ``out`` in a fresh process; the folder and the seconds it took."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "kerasimg.pack", str(data), "--out", str(out), "--verify", verify]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return out, round(time.perf_counter() - started, 2)


def measure_store(count: int, work: Path, log=print) -> dict:
    """Listing, keys, and a fresh verdict store's write and read of ``count`` entries; nothing decoded."""
    from kerasimg.data.sources import list_files
    from kerasimg.data.verify import _COMMIT_EVERY, VerdictStore, file_key

    data = make_empty_files(work / f"empty-{count}", count)
    row: dict = {"mode": "store", "files": count}
    start = time.perf_counter()
    paths = [p for c in range(CLASSES) for p in list_files(data / f"class{c}", log=log)]
    row["listing_seconds"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    keys = [file_key(p) for p in paths]
    row["key_seconds"] = round(time.perf_counter() - start, 2)
    with tempfile.TemporaryDirectory(prefix="data-scale-", dir=work) as scratch:
        store_path = Path(scratch) / "verified-files.sqlite"
        start = time.perf_counter()
        with VerdictStore(store_path) as store:
            for i in range(0, len(keys), _COMMIT_EVERY):
                store.put_many((k, "ok:48,48") for k in keys[i : i + _COMMIT_EVERY])
        row["store_write_seconds"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        with VerdictStore(store_path) as store:
            found = store.get_many(keys)
        row["store_lookup_seconds"] = round(time.perf_counter() - start, 2)
        row["store_mb"] = round(store_path.stat().st_size / 2**20, 1)
    row["found"] = len(found)
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)
    log(_describe(row))
    return row


def _describe(row: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in row.items())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.child:
            data, out, launched = args.child
            write_json(args.json, _child(data, out, float(launched), args.epochs, args.verify))
            return 0
        work = Path(args.work) if args.work else kerasimg_home() / "data-scale"
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for count in args.files:
            if args.mode == "store":
                rows.append(measure_store(count, work))
            else:
                rows += measure_fit(count, work, args.epochs, args.verify, args.runs)
        if args.json:
            write_json(args.json, rows)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
