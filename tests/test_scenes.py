"""The built-in demo set: exact layout, deterministic, and not separable by colour alone."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from kerasimg.data.scenes import CLASS_NAMES, IMAGE_SIZE, ensure_scenes


def digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.jpg")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_is_intels_exactly(tiny_scenes):
    for split, count in (("seg_train", 6), ("seg_test", 3)):
        folders = sorted(p.name for p in (tiny_scenes / split / split).iterdir())
        assert folders == sorted(CLASS_NAMES)
        for name in CLASS_NAMES:
            files = list((tiny_scenes / split / split / name).glob("*.jpg"))
            assert len(files) == count
    pred = list((tiny_scenes / "seg_pred" / "seg_pred").iterdir())
    assert len(pred) == 4 and all(p.suffix == ".jpg" for p in pred)
    image = Image.open(pred[0])
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "RGB"


def test_generation_is_deterministic_and_seeded(tmp_path, tiny_scenes):
    again = ensure_scenes(train_per_class=6, test_per_class=3, pred=4, seed=0, root=tmp_path / "again")
    other = ensure_scenes(train_per_class=6, test_per_class=3, pred=4, seed=1, root=tmp_path / "other")
    assert digest(again) == digest(tiny_scenes)
    assert digest(other) != digest(tiny_scenes)


def colour_features(root, split):
    features, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        for path in sorted((root / split / split / name).glob("*.jpg")):
            pixels = np.asarray(Image.open(path), dtype=np.float32).reshape(-1, 3) / 255
            features.append(np.concatenate([pixels.mean(0), pixels.std(0)]))
            labels.append(label)
    return np.array(features), np.array(labels)


def test_mean_colour_logistic_regression_stays_below_60_percent(tmp_path):
    root = ensure_scenes(train_per_class=60, test_per_class=30, pred=0, seed=0, root=tmp_path / "s")
    x_train, y_train = colour_features(root, "seg_train")
    x_test, y_test = colour_features(root, "seg_test")
    mean, std = x_train.mean(0), x_train.std(0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    # Multinomial logistic regression by full-batch gradient descent, run to convergence.
    weights, bias = np.zeros((6, 6)), np.zeros(6)
    for _ in range(3000):
        logits = x_train @ weights + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y_train)), y_train] -= 1
        weights -= 0.2 * x_train.T @ p / len(y_train)
        bias -= 0.2 * p.mean(0)
    train_accuracy = np.mean((x_train @ weights + bias).argmax(1) == y_train)
    test_accuracy = np.mean((x_test @ weights + bias).argmax(1) == y_test)
    assert train_accuracy > 1 / 6  # the baseline did learn something from colour ...
    assert test_accuracy < 0.60  # ... but colour alone does not separate the classes
