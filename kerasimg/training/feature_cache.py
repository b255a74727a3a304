"""Frozen-feature cache: while the whole backbone is frozen, compute its features once.

A linear probe otherwise recomputes the same backbone forward pass every epoch;
with the features stored, an epoch is a few matrix multiplications. With flip
augmentation both the plain and the mirrored view of every training image are
cached and each epoch picks one per image at random, which is the distribution
image training sees. The head trained here is the classifier's own head layers,
shared, so the classifier carries the result without copying weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasimg.data import image_dataset
from kerasimg.data.splits import FileSplit
from kerasimg.files import atomic_write, write_json
from kerasimg.models.classifier import FEATURES_LAYER


def split_classifier(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(extractor, head)``: images -> features, and features -> probabilities.

    The head reuses the classifier's layers after ``FEATURES_LAYER``, so training it
    trains the classifier.
    """
    pool = model.get_layer(FEATURES_LAYER)
    extractor = keras.Model(model.inputs, pool.output, name="feature_extractor")
    layers = model.layers[model.layers.index(pool) + 1 :]
    features = keras.Input(tuple(pool.output.shape[1:]), name="features")
    x = features
    for layer in layers:
        x = layer(x)
    return extractor, keras.Model(features, x, name="head")


def _fingerprint(split, extra: dict) -> str:
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    if isinstance(split, FileSplit):
        for path, label in zip(split.paths, split.labels):
            h.update(f"{path}|{label}|".encode())
    else:
        h.update(repr(split).encode())
    return h.hexdigest()[:16]


def extract(
    extractor: keras.Model,
    split,
    image_size: int,
    batch_size: int,
    views: tuple[str, ...],
    cache_dir: Path,
    name: str,
    identity: dict,
    log=print,
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, views, D]`` and labels ``[N]`` for ``split``, from disk when already cached."""
    fingerprint = _fingerprint(split, {**identity, "views": views, "image_size": image_size})
    path = cache_dir / f"{name}-{fingerprint}.npz"
    if path.exists():
        with np.load(path) as cached:
            return cached["features"], cached["labels"]
    dataset = image_dataset(split, image_size, batch_size, training=False)
    total = -(-len(split) // batch_size) if hasattr(split, "__len__") else None
    log(f"Caching backbone features for {name} ({', '.join(views)} view{'s' * (len(views) > 1)})...")
    bar = keras.utils.Progbar(total, unit_name="batch")
    features, labels = [], []
    for step, (images, batch_labels) in enumerate(dataset, 1):
        # predict(), not predict_on_batch(): the latter duplicates the batch per replica under
        # MirroredStrategy.
        per_view = [extractor.predict(images, batch_size=len(images), verbose=0)]
        if "flipped" in views:
            per_view.append(
                extractor.predict(tf.image.flip_left_right(images), batch_size=len(images), verbose=0)
            )
        features.append(np.stack(per_view, axis=1).astype("float32"))  # bfloat16 does not round-trip .npz
        labels.append(batch_labels.numpy())
        bar.update(step)
    features_array, labels_array = np.concatenate(features), np.concatenate(labels)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, features=features_array, labels=labels_array)

    atomic_write(path, write)
    write_json(
        cache_dir / f"{name}-{fingerprint}.json", {**identity, "views": views, "count": len(labels_array)}
    )
    return features_array, labels_array


def feature_dataset(
    features: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(features, labels)``; in training, shuffled like the image pipeline and one
    random view per example."""
    ds = tf.data.Dataset.from_tensor_slices((features, labels.astype("int32")))
    if num_classes is not None:  # what label smoothing needs
        ds = ds.map(lambda f, y: (f, tf.one_hot(y, num_classes)))
    if training:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        views = features.shape[1]
        if views > 1:
            ds = ds.map(lambda f, y: (f[tf.random.uniform([], 0, views, tf.int32, seed=seed)], y))
        else:
            ds = ds.map(lambda f, y: (f[0], y))
    else:
        ds = ds.map(lambda f, y: (f[0], y))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
