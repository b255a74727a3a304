"""Outliers (images far from every class in embedding space) and class imbalance.

Each class is the mean of its training images' unit-length embeddings; an image's distance
is one minus its cosine similarity to the nearest class mean. An image is an outlier when
that distance lies beyond Tukey's far-out fence of the training distances (third quartile
plus three interquartile ranges), so a set with none flags none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FENCE = 3.0
# A class with fewer than this fraction of the largest class's images is reported as rare.
IMBALANCE_RATIO = 1 / 3


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Outliers:
    distance: np.ndarray  # [N] to the nearest class mean
    nearest: np.ndarray  # [N] that class
    fence: float

    @property
    def is_outlier(self) -> np.ndarray:
        return self.distance > self.fence


def find_outliers(
    train_embeddings: np.ndarray, train_labels: np.ndarray, embeddings: np.ndarray, num_classes: int
) -> Outliers:
    """Distances of ``embeddings`` to the class means of the training embeddings, and the fence."""
    train = _unit(train_embeddings)
    means = np.stack(
        [
            train[train_labels == c].mean(axis=0) if np.any(train_labels == c) else np.zeros(train.shape[1])
            for c in range(num_classes)
        ]
    )
    similarity = _unit(embeddings) @ _unit(means).T
    train_distance = 1 - (train @ _unit(means).T).max(axis=1)
    q1, q3 = np.percentile(train_distance, [25, 75])
    return Outliers(1 - similarity.max(axis=1), similarity.argmax(axis=1), float(q3 + FENCE * (q3 - q1)))


def imbalance(counts: list[int], class_names: list[str]) -> str | None:
    """One line naming the classes much smaller than the largest, or ``None``."""
    largest = max(counts)
    rare = [
        f"{name} ({count})" for name, count in zip(class_names, counts) if count < largest * IMBALANCE_RATIO
    ]
    if not rare:
        return None
    return (
        f"Class imbalance: {', '.join(rare)} have under a third of the largest class's {largest} training "
        "images; consider more images or fit --class-weight auto."
    )
