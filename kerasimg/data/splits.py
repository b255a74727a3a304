"""Labelled splits and the seeded, stratified carving of one split out of another."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The fraction of each class held out as test when a source has no test split (fit does not change it).
TEST_SPLIT = 0.15


@dataclass
class FileSplit:
    """Image files and their integer labels (indices into the class names).

    Multi-label data (``fit --task multilabel``) also has ``targets``: one multi-hot row of 0/1 per
    file, a column per class. ``labels`` then holds each file's first listed class, which is what
    stratified carving balances.
    """

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    # A SkipRecorder when the files are checked as the pipeline reads them (kerasimg.data.pipeline).
    skips: object = field(default=None, repr=False, compare=False)
    targets: list[tuple[int, ...]] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> FileSplit:
        """The files at positions ``index``, in that order, with their labels (and targets)."""
        index = list(index)
        return FileSplit(
            [self.paths[i] for i in index],
            [self.labels[i] for i in index],
            targets=None if self.targets is None else [self.targets[i] for i in index],
        )

    def without(self, files) -> FileSplit:
        """The same split less ``files`` (a set or a mapping of paths)."""
        return self.subset(i for i, p in enumerate(self.paths) if p not in files)

    def __add__(self, other: FileSplit) -> FileSplit:
        both = None if self.targets is None else [*self.targets, *other.targets]
        return FileSplit(self.paths + other.paths, self.labels + other.labels, targets=both)

    def class_counts(self, num_classes: int) -> list[int]:
        """Files per class; with ``targets``, files that carry each class among their labels."""
        if self.targets is not None:
            if not self.targets:
                return [0] * num_classes
            return np.asarray(self.targets, dtype=int).sum(axis=0).tolist()
        return np.bincount(np.asarray(self.labels, dtype=int), minlength=num_classes).tolist()

    def label_array(self) -> np.ndarray:
        """What the input pipeline feeds the loss: int32 class indices, or float32 multi-hot rows."""
        if self.targets is not None:
            return np.asarray(self.targets, np.float32).reshape(len(self), -1)
        return np.asarray(self.labels, np.int32)


def stratified_split(split: FileSplit, fraction: float, seed: int) -> tuple[FileSplit, FileSplit]:
    """Carve ``fraction`` of every class out of ``split``: returns ``(rest, carved)``.

    Each class with at least two files gives ``round(n * fraction)`` of them, at
    least one, and keeps at least one. The same seed and files give the same split.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1. Received: fraction={fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels, dtype=int)
    carved_index: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        # Sort by path first so the result does not depend on listing order.
        members = sorted(members, key=lambda i: split.paths[i])
        if len(members) < 2:
            continue
        take = min(len(members) - 1, max(1, round(len(members) * fraction)))
        carved_index.extend(rng.permutation(members)[:take].tolist())
    carved = set(carved_index)
    return split.subset(i for i in range(len(split)) if i not in carved), split.subset(sorted(carved))


def fold_split(split: FileSplit, folds: int, fold: int, seed: int) -> tuple[FileSplit, FileSplit]:
    """Fold ``fold`` (1..``folds``) of ``split``'s stratified K-fold partition: returns ``(rest, fold)``.

    scikit-learn's ``StratifiedKFold`` (shuffled, seeded) on the files sorted by path, so the
    folds do not depend on listing order and the K folds of one seed partition ``split``.
    A class with fewer than ``folds`` files would be missing from some fold's validation, so it
    is refused by name.
    """
    from sklearn.model_selection import StratifiedKFold

    order = sorted(range(len(split)), key=lambda i: split.paths[i])
    labels = np.asarray([split.labels[i] for i in order], dtype=int)
    counts = np.bincount(labels)
    if counts[counts > 0].min() < folds:
        label = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
        raise ValueError(f"class {label} has {counts[label]} images to share among {folds} folds")
    chosen = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(order, labels))[fold - 1][1]
    held = {order[i] for i in chosen}
    return split.subset(i for i in range(len(split)) if i not in held), split.subset(sorted(held))
