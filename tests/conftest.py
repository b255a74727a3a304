"""Fixtures only: tiny image trees written into tmp folders, never the network.

Shared plain helpers (image writers, fit configs, crafted bytes) live in helpers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

import pytest  # noqa: E402

# The files that take longest (test-seconds on 2 cores, most first). The two workers take whole files
# in collection order, so the long ones start first and the short ones fill in at the end; by test
# count (xdist's default order) the multihost file, 8 tests and three minutes, started last and one
# worker waited for it.
LONGEST_FIRST = [
    "test_serving.py",
    "test_multihost.py",
    "test_tune.py",
    "test_recipe.py",
    "test_models.py",
    "test_precision.py",
    "test_schedules.py",
    "test_startup.py",
    "test_hardening.py",
    "test_diagnose.py",
    "test_bench.py",
    "test_formats.py",
    "test_fit.py",
    "test_data_scale.py",
    "test_lr_find.py",
    "test_trackers.py",
    "test_api.py",
    "test_boundary_cache.py",
    "test_batchnorm_folding.py",
    "test_efficientnet.py",
    "test_compare.py",
    "test_kfold.py",
    "test_csv_labels.py",
]


def pytest_collection_modifyitems(items):
    """Longest files first (``LONGEST_FIRST``), the rest after in their own order; tests keep theirs."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
