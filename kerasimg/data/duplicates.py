"""Exact duplicates by content: the same bytes under two names, within a split or across splits.

A test image that is byte for byte a training image inflates test accuracy. Files are
grouped by size first and only sizes that occur twice are hashed, so checking a data set
whose files are all distinct reads almost nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict


def content_hash(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def exact_groups(paths: list[str]) -> list[list[str]]:
    """Groups of two or more paths with identical bytes, each in the order given; unreadable files skipped."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for path in paths:
        try:
            by_size[os.path.getsize(path)].append(path)
        except OSError:
            continue
    groups: dict[str, list[str]] = defaultdict(list)
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        for path in same_size:
            try:
                groups[content_hash(path)].append(path)
            except OSError:
                continue
    order = {path: i for i, path in enumerate(paths)}
    return sorted(
        (sorted(g, key=order.__getitem__) for g in groups.values() if len(g) > 1),
        key=lambda g: order[g[0]],
    )


def cross_split_duplicates(first: list[str], second: list[str]) -> list[tuple[str, str]]:
    """``(file in first, file in second)`` pairs with identical bytes (one pair per file of ``second``)."""
    in_first = set(first)
    pairs = []
    for group in exact_groups(list(first) + [p for p in second if p not in in_first]):
        ours = [p for p in group if p in in_first]
        if ours:
            pairs.extend((ours[0], p) for p in group if p not in in_first)
    return pairs


def leakage_warning(train, test) -> str | None:
    """One line when test files are exact copies of training files (``fit`` prints it), else ``None``.

    ``train`` and ``test`` are splits; those without files (TFDS) are not checked.
    """
    if not (hasattr(train, "paths") and hasattr(test, "paths")):
        return None
    pairs = cross_split_duplicates(train.paths, test.paths)
    if not pairs:
        return None
    example = f"{pairs[0][1]} = {pairs[0][0]}"
    return (
        f"Warning: {len(pairs)} test image(s) are exact copies of training images (e.g. {example}), "
        "which inflates test accuracy; `python -m kerasimg.audit DATA` lists them and near copies."
    )
