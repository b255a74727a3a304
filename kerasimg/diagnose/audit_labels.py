"""Label issues by confident learning (Northcutt, Jiang and Chuang, JAIR 2021; the ``cleanlab`` package).

Given each image's out-of-fold predicted probabilities and its given label:

1. a per-class threshold ``t_j``: the mean probability of class ``j`` over the images labelled
   ``j`` (the model's average self-confidence in that class);
2. the confident joint ``C[i, j]``: images labelled ``i`` whose probability of ``j`` reaches
   ``t_j`` (the largest such class when several do), calibrated so that row ``i`` sums to the
   number of images labelled ``i``;
3. pruning by noise rate: for each off-diagonal cell, the ``round(C[i, j])`` images labelled ``i``
   with the largest margin ``p_j - p_i`` are label issues, unless their most probable class
   is the given one.

Images are ranked by self-confidence (``p_given``, lowest first) or by the normalised margin
``(p_given - max_other + 1) / 2``: a low score is a likely wrong label. Numpy only; cleanlab
itself is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANKINGS = ("self_confidence", "normalized_margin")


def class_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``t[j]``: the mean probability of class ``j`` over the images labelled ``j`` (1.0 for none)."""
    num_classes = probabilities.shape[1]
    sums = np.bincount(labels, weights=probabilities[np.arange(len(labels)), labels], minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_joint(labels: np.ndarray, probabilities: np.ndarray, calibrate: bool = True) -> np.ndarray:
    """``C[given, true]``: counts of images confidently of class ``true`` among those labelled ``given``."""
    num_classes = probabilities.shape[1]
    confident = probabilities >= class_thresholds(labels, probabilities) - 1e-6
    bins = confident.sum(axis=1)
    # One confident class: that class; several: the most probable one (as cleanlab does).
    guess = np.where(bins > 1, probabilities.argmax(axis=1), confident.argmax(axis=1))
    keep = bins > 0
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (labels[keep], guess[keep]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))  # every class keeps one clean example
    if not calibrate:
        return joint
    counts = np.bincount(labels, minlength=num_classes)
    joint = joint / joint.sum(axis=1, keepdims=True) * counts[:, None]
    return joint / joint.sum() * counts.sum()


def scores(labels: np.ndarray, probabilities: np.ndarray, ranking: str = "self_confidence") -> np.ndarray:
    """Per image in [0, 1]; low means the given label is likely wrong."""
    given = probabilities[np.arange(len(labels)), labels]
    if ranking == "self_confidence":
        return given
    if ranking == "normalized_margin":
        others = probabilities.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        return (given - others.max(axis=1) + 1) / 2
    raise ValueError(f"ranking must be one of {RANKINGS}. Received: ranking={ranking!r}")


@dataclass(frozen=True)
class LabelIssues:
    """Confident learning's verdict on every image of one labelled set."""

    is_issue: np.ndarray  # [N] bool
    scores: np.ndarray  # [N] low: likely mislabelled
    suggested: np.ndarray  # [N] the most probable class
    joint: np.ndarray  # [C, C] calibrated confident joint, rows given, columns true
    thresholds: np.ndarray  # [C]

    def ranked(self) -> np.ndarray:
        """Indices of every image, the likeliest mislabelled first (lowest score; ties by index)."""
        return np.argsort(self.scores, kind="stable")

    @property
    def estimated_issues(self) -> int:
        """Confident learning's estimate of how many labels are wrong (the joint's off-diagonal mass)."""
        return int(round(self.joint.sum() - np.trace(self.joint)))


def find_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, ranking: str = "self_confidence"
) -> LabelIssues:
    """Label issues by pruning each given class's off-diagonal counts of the confident joint.

    For given class ``i`` and true class ``j != i``, the ``round(C[i, j])`` images labelled ``i``
    with the largest ``p_j - p_i`` are flagged (cleanlab's ``prune_by_noise_rate``).
    """
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    joint = confident_joint(labels, probabilities)
    prune = np.rint(joint).astype(int)
    is_issue = np.zeros(len(labels), bool)
    for i in range(joint.shape[0]):
        members = np.flatnonzero(labels == i)
        for j in range(joint.shape[1]):
            if i == j or prune[i, j] == 0 or len(members) == 0:
                continue
            margin = probabilities[members, j] - probabilities[members, i]
            is_issue[members[np.argsort(-margin, kind="stable")[: prune[i, j]]]] = True
    is_issue &= probabilities.argmax(axis=1) != labels  # the model agrees with the label: kept (as cleanlab)
    return LabelIssues(
        is_issue=is_issue,
        scores=scores(labels, probabilities, ranking),
        suggested=probabilities.argmax(axis=1),
        joint=joint,
        thresholds=class_thresholds(labels, probabilities),
    )
