"""The numbers people compare classifiers on, from per-image probabilities.

Beside accuracy: top-k accuracy (k=2 below 10 classes, 5 from 10 up, as the
ImageNet literature reports top-5), balanced accuracy (mean per-class recall, which
a majority-class guesser cannot inflate), macro-F1, and the expected calibration
error (ECE) over 15 equal-width confidence bins (Guo et al., 2017): the
sample-weighted mean gap between confidence and accuracy per bin.
"""

from __future__ import annotations

import numpy as np

from kerasimg.training import reports

ECE_BINS = 15


def top_k_for(num_classes: int) -> int:
    return 5 if num_classes >= 10 else 2


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Fraction of images whose true class is among the ``k`` most probable."""
    if len(labels) == 0:
        return 0.0
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def calibration_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin ``(lo, hi]``: count, mean confidence, accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of 0 joins the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = which == i
        count = int(members.sum())
        rows.append(
            {
                "low": float(edges[i]),
                "high": float(edges[i + 1]),
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(bins: list[dict]) -> float:
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, top-k, balanced accuracy, macro-F1, ECE, per-class P/R/F1/support, confusion matrix."""
    labels = np.asarray(labels, np.int64)
    predicted = probabilities.argmax(axis=1)
    matrix = reports.confusion_matrix(labels, predicted, len(class_names))
    per_class = reports.per_class_metrics(matrix, class_names)
    present = [m for m in per_class.values() if m["support"] > 0]
    k = min(top_k_for(len(class_names)), len(class_names))
    bins = calibration_bins(labels, probabilities)
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else 0.0,
        "top_k": k,
        "top_k_accuracy": top_k_accuracy(labels, probabilities, k),
        "balanced_accuracy": float(np.mean([m["recall"] for m in present])) if present else 0.0,
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
        "ece": expected_calibration_error(bins),
        "calibration_bins": bins,
        "per_class": per_class,
        "confusion_matrix": matrix,
    }
