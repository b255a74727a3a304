"""What several test modules build: tiny images, class trees, fit configs, crafted image bytes.

Plain functions and classes, imported as ``from helpers import ...`` (``pythonpath`` in
pyproject.toml puts ``tests/`` on the path); fixtures stay in conftest.py.
"""

from __future__ import annotations

import io
import re
import struct
import textwrap
import zlib
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from kerasimg.training import FitConfig


def write_image(
    path: Path,
    rng: np.random.Generator,
    size: int = 40,
    mode: str = "RGB",
    colour: tuple[int, int, int] | None = None,
) -> Path:
    """A small random (or flat-coloured) image, format chosen by the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if colour is not None:
        array = np.broadcast_to(np.array(colour, np.uint8), (size, size, 3)).copy()
    else:
        array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def make_class_tree(root: Path, classes: dict[str, int], seed: int = 0, ext: str = "jpg") -> Path:
    """``root/<class>/<i>.<ext>`` with ``classes[name]`` images each."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        for i in range(count):
            write_image(root / name / f"{i}.{ext}", rng)
    return root


def make_separable(root: Path, per_class: int = 12) -> Path:
    """Two classes anyone can tell apart: dark images and bright images, in train/ and test/."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", 4)):
        for i in range(count):
            shade = int(rng.integers(0, 60))
            write_image(root / split / "dark" / f"{i}.png", rng, size=32, colour=(shade,) * 3)
            shade = int(rng.integers(190, 256))
            write_image(root / split / "bright" / f"{i}.png", rng, size=32, colour=(shade,) * 3)
    return root


def tiny_config(data, out, **overrides) -> FitConfig:
    """small_cnn from scratch at 32 px, 2 epochs of batch 8, seed 0; ``overrides`` replace any of it."""
    settings = dict(
        backbone="small_cnn",
        data=str(data),
        weights="none",
        epochs=2,
        batch_size=8,
        image_size=32,
        out=str(out),
        seed=0,
    )
    settings.update(overrides)
    return FitConfig(**settings)


class CrashAfterEpoch(keras.callbacks.Callback):
    """Simulates Ctrl-C at the end of one epoch (after the driver's callbacks have saved it)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def encoded(array: np.ndarray, fmt: str, **save) -> bytes:
    """``array`` as the bytes of an image file in Pillow's format ``fmt``."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **save)
    return buffer.getvalue()


def bomb_png(height: int, width: int) -> bytes:
    """A valid PNG header that claims ``height x width`` pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def oriented_jpeg(upright: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose stored pixels, turned as EXIF ``orientation`` says, give ``upright``."""
    stored = {
        1: upright,
        3: np.rot90(upright, 2),
        6: np.rot90(upright, 1),  # shown rotated 90 degrees clockwise, so stored counter-clockwise
        8: np.rot90(upright, -1),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(np.ascontiguousarray(stored), "JPEG", exif=exif, quality=95)


# A fresh TensorFlow process loads a zoo SavedModel and serves JPEG bytes: what TF Serving would see.
FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    serve = model.signatures["serving_default"]
    images = [open(p, "rb").read() for p in sys.argv[2:]]
    out = serve(image_bytes=tf.constant(images))
    spec = serve.structured_input_signature[1]
    print(json.dumps({
        "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in spec.items()},
        "outputs": sorted(serve.structured_outputs),
        "probabilities": out["probabilities"].numpy().tolist(),
        "classes": [c.decode() for c in out["classes"].numpy()],
        "predicted": out["predicted"].numpy().tolist() if "predicted" in out else None,
        "labels": open(sys.argv[1] + "/assets/labels.txt").read().split(),
    }))
    """
)


def serve_in_fresh_process(saved_model: Path, files: list[Path], folder: Path) -> dict:
    """``FRESH_PROCESS``'s answer for ``files`` sent to ``saved_model`` (asserts the process succeeded)."""
    import json
    import subprocess
    import sys

    script = folder / "serve.py"
    script.write_text(FRESH_PROCESS)
    done = subprocess.run(
        [sys.executable, str(script), str(saved_model), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


NATIVE_LOG_LINE = re.compile(r"^[EWIF]\d{4} ", re.M)  # TensorFlow's C++ log format: E0000 00:00:...
ANSI_ESCAPE = re.compile(r"\x1b\[")


def assert_quiet(*outputs: str) -> None:
    """A command's piped output holds no TensorFlow native log line and no terminal escape (progress bars)."""
    for output in outputs:
        native = NATIVE_LOG_LINE.findall(output)
        assert not native, [line for line in output.splitlines() if NATIVE_LOG_LINE.match(line)][:5]
        assert not ANSI_ESCAPE.search(output), repr(output[:2000])


def make_multilabel_csv(root: Path, per_split: dict[str, int] | None = None) -> Path:
    """A multi-label CSV anyone can learn: ``red`` or ``blue`` by the dominant channel, plus ``striped``
    when the top half is bright; ``labels.csv`` (file,labels,split) over PNGs in ``root/img``."""
    rng = np.random.default_rng(0)
    rows = ["file,labels,split"]
    for split, count in (per_split or {"train": 24, "val": 8, "test": 8}).items():
        for i in range(count):
            red, striped = i % 2 == 0, (i // 2) % 2 == 0
            array = np.zeros((32, 32, 3), np.uint8)
            array[..., 0 if red else 2] = int(rng.integers(150, 230))
            if striped:
                array[:16] = 255
            path = root / "img" / f"{split}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
            labels = ["red" if red else "blue"] + ["striped"] * striped
            rows.append(f"img/{path.name},{';'.join(labels)},{split}")
    csv_path = root / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path
