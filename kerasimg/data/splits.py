"""Labelled splits and the seeded, stratified carving of one split out of another."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The fraction of each class held out as test when a source has no test split (fit does not change it).
TEST_SPLIT = 0.15


@dataclass
class FileSplit:
    """Image files and their integer labels (indices into the class names)."""

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    # A SkipRecorder when the files are checked as the pipeline reads them (kerasimg.data.pipeline).
    skips: object = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    def without(self, files) -> FileSplit:
        """The same split less ``files`` (a set or a mapping of paths)."""
        kept = [(p, y) for p, y in zip(self.paths, self.labels) if p not in files]
        return FileSplit([p for p, _ in kept], [y for _, y in kept])

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=int), minlength=num_classes).tolist()


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
    rest = FileSplit()
    out = FileSplit()
    for i, (path, label) in enumerate(zip(split.paths, split.labels)):
        target = out if i in carved else rest
        target.paths.append(path)
        target.labels.append(label)
    return rest, out


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
    rest, out = FileSplit(), FileSplit()
    for i, (path, label) in enumerate(zip(split.paths, split.labels)):
        target = out if i in held else rest
        target.paths.append(path)
        target.labels.append(label)
    return rest, out
