"""Fixtures only: tiny image trees written into tmp folders, never the network.

Shared plain helpers (image writers, fit configs, crafted bytes) live in helpers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Keep the verdict cache and generated data out of the user's ~/.cache and ~/.keras."""
    home = tmp_path_factory.getbasetemp() / "kerasimg-home"
    monkeypatch.setenv("KERASIMG_HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras-home"))
    return home


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
