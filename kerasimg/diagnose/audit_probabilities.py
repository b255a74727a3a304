"""Out-of-fold class probabilities and embeddings: what the audit's judgements are made from.

Confident learning needs, for every training image, probabilities from a model that never
saw that image's label: the images are split into K stratified folds and each fold is
predicted by a model trained on the others. Two ways to get such models:

- ``FeatureProbe`` (pretrained weights): the backbone's pooled features are computed once
  (through the feature cache, so a second audit reads them back) and a logistic regression
  is fitted per fold on them: seconds, whatever K.
- ``ShortFit`` (``weights="none"``, e.g. ``small_cnn``): random features say little, so a
  classifier is trained from scratch per fold for a few epochs. The training images are decoded
  once into memory at the audit's size, not once per fold and epoch. The first fold's model also
  gives the embeddings for duplicates and outliers.

Both have ``out_of_fold(split)`` and ``embed(split)``, so the audit does not branch on which.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kerasimg.data import FileSplit, image_dataset
from kerasimg.data.augment import PLAIN_VIEW
from kerasimg.data.pipeline import augmented
from kerasimg.errors import UserError
from kerasimg.models import build_classifier
from kerasimg.training import feature_cache
from kerasimg.training.feature_cache import split_classifier
from kerasimg.training.recipe import compile_classifier


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train indices, held-out indices)`` per fold, every class spread over the folds."""
    counts = np.bincount(labels)
    if counts[counts > 0].min() < folds:
        raise UserError(
            f"folds={folds} needs at least {folds} training images in every class; the smallest class "
            f"has {counts[counts > 0].min()}. Pass a smaller --folds. Received: folds={folds}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


class FeatureProbe:
    """A logistic regression per fold on the pretrained backbone's cached pooled features."""

    def __init__(self, backbone, num_classes, image_size, weights, batch_size, folds, seed, cache_dir, log):
        self.extractor, _ = split_classifier(build_classifier(backbone, num_classes, image_size, weights))
        self.identity = {"backbone": backbone, "weights": weights, "image_size": image_size}
        self.image_size, self.batch_size, self.folds, self.seed = image_size, batch_size, folds, seed
        self.cache_dir, self.log = Path(cache_dir), log
        self.rows: dict[str, np.ndarray] = {}  # file -> features
        self.num_classes = num_classes

    def embed(self, split: FileSplit) -> np.ndarray:
        """Features of ``split``; files embedded before (the training pool) are not computed again."""
        new = [i for i, path in enumerate(split.paths) if path not in self.rows]
        if new:
            missing = split.subset(new)
            self.rows.update(zip(missing.paths, self._extract(missing)))
        return np.stack([self.rows[p] for p in split.paths])

    def _extract(self, split: FileSplit) -> np.ndarray:
        cached = feature_cache.extract(
            self.extractor,
            feature_cache.image_views(split, self.image_size, self.batch_size, PLAIN_VIEW, "none", self.seed),
            split=split,
            count=len(split),
            cache_dir=self.cache_dir,
            name="audit",
            identity={**self.identity, "views": list(PLAIN_VIEW)},
            log=self.log,
        )
        return np.concatenate([views[0] for views, _ in feature_cache.cached_batches(cached, 4096)])

    def out_of_fold(self, split: FileSplit) -> np.ndarray:
        features, labels = self.embed(split), np.asarray(split.labels)
        probabilities = np.zeros((len(labels), self.num_classes))
        for train, held in stratified_folds(labels, self.folds, self.seed):
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
            probe.fit(features[train], labels[train])
            probabilities[np.ix_(held, probe.classes_)] = probe.predict_proba(features[held])
        return probabilities


def _images(images, _labels):
    return images


def decoded_images(split: FileSplit, image_size: int, batch_size: int) -> np.ndarray:
    """Every image of ``split`` as uint8 ``[N, size, size, 3]``, in order: 27 KB an image at 96 px."""
    batches = image_dataset(split, image_size, batch_size, training=False).map(_images)
    return np.concatenate([np.asarray(tf.cast(tf.round(b), tf.uint8)) for b in batches])


def _training_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """What ``image_dataset`` gives a training split (reshuffled each epoch, flipped), from memory."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return augmented(ds, "flip", seed, one_hot=False).prefetch(tf.data.AUTOTUNE)


def _predict_with_flips(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The mean of the probabilities for each image and its mirror image: the model trained on both."""
    views = [images.astype(np.float32), images[:, :, ::-1, :].astype(np.float32)]
    return sum(model.predict(view, batch_size=batch_size, verbose=0) for view in views) / 2


class ShortFit:
    """A classifier trained from scratch on K-1 folds predicts the K-th, K times."""

    def __init__(self, backbone, num_classes, image_size, epochs, batch_size, folds, seed, log):
        self.backbone, self.num_classes, self.image_size = backbone, num_classes, image_size
        self.epochs, self.batch_size, self.folds, self.seed, self.log = epochs, batch_size, folds, seed, log
        self.extractor = None

    def _train(self, images: np.ndarray, labels: np.ndarray, fold: int) -> keras.Model:
        keras.utils.set_random_seed(self.seed + fold)
        model = build_classifier(self.backbone, self.num_classes, self.image_size, weights="none")
        # Cosine to zero: the last epochs settle instead of jumping between noisy minima, so the
        # held-out probabilities that rank the labels are steadier.
        steps = -(-len(labels) // self.batch_size) * self.epochs
        compile_classifier(model, keras.optimizers.schedules.CosineDecay(1e-3, steps))
        data = _training_batches(images, labels, self.batch_size, self.seed + fold)
        model.fit(data, epochs=self.epochs, verbose=0, shuffle=False)  # the pipeline shuffles, seeded
        return model

    def out_of_fold(self, split: FileSplit) -> np.ndarray:
        labels = np.asarray(split.labels)
        probabilities = np.zeros((len(labels), self.num_classes))
        self.log(f"Decoding {len(labels)} training images once for the {self.folds} folds...")
        images = decoded_images(split, self.image_size, self.batch_size)
        for fold, (train, held) in enumerate(stratified_folds(labels, self.folds, self.seed)):
            self.log(f"Fold {fold + 1}/{self.folds}: training {self.backbone} on {len(train)} images...")
            model = self._train(images[train], labels[train], fold)
            probabilities[held] = _predict_with_flips(model, images[held], self.batch_size)
            if self.extractor is None:
                self.extractor, _ = split_classifier(model)
        return probabilities

    def embed(self, split: FileSplit) -> np.ndarray:
        if self.extractor is None:
            raise RuntimeError("ShortFit.embed needs out_of_fold to have trained a model first")
        images = image_dataset(split, self.image_size, self.batch_size, training=False)
        return np.asarray(self.extractor.predict(images.map(_images), verbose=0), np.float32)
