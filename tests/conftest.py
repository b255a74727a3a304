"""Shared fixtures: tiny image trees written into tmp folders, never the network."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Keep the verdict cache and generated data out of the user's ~/.cache and ~/.keras."""
    home = tmp_path_factory.getbasetemp() / "kerasimg-home"
    monkeypatch.setenv("KERASIMG_HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras-home"))
    return home


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


class CrashAfterEpoch(keras.callbacks.Callback):
    """Simulates Ctrl-C at the end of one epoch (after the driver's callbacks have saved it)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory) -> Path:
    """The demo set at a few images per class, in Intel's layout."""
    from kerasimg.data.scenes import ensure_scenes

    return ensure_scenes(
        train_per_class=6, test_per_class=3, pred=4, seed=0, root=tmp_path_factory.mktemp("scenes") / "tiny"
    )


@pytest.fixture(scope="session")
def small_cnn_weights(tmp_path_factory) -> str:
    """A weights file for small_cnn's backbone, standing in for pretrained weights offline."""
    import keras

    from kerasimg.models import backbone_of, build_classifier

    keras.utils.set_random_seed(123)
    model = build_classifier("small_cnn", 2, image_size=32, weights="none")
    path = tmp_path_factory.mktemp("weights") / "small_cnn.weights.h5"
    backbone_of(model).save_weights(path)
    return str(path)
