"""The evaluation a multi-label run ends with (``--task multilabel``): thresholds, mAP, F1, per class.

A sigmoid output is the probability of its own class, and 0.5 is rarely the best cut for a class
seen in a few percent of the images. Each class's threshold is chosen on the validation split,
where F1 is highest (0.5 for a class validation never shows), and the test split is then scored
with them: exact-match accuracy (every class of an image right), micro- and macro-F1, and the
threshold-free mean average precision (mAP: per-class AP, the area under the precision-recall
steps, averaged over the classes the test split has), with scikit-learn's definitions.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import keras
import numpy as np

from kerasimg.data import LabelledData
from kerasimg.data.csv_labels import LABEL_SEPARATOR
from kerasimg.diagnose.predictions import EPSILON, split_probabilities
from kerasimg.files import save_figure, write_text
from kerasimg.tables import csv_writer
from kerasimg.training.reports import plt, styled
from kerasimg.training.run import Run

DEFAULT_THRESHOLD = 0.5


def choose_thresholds(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per class, the probability cut with the highest F1 on ``targets`` (0.5 for a class never seen).

    The cut sits halfway between the lowest score it keeps and the highest one it drops, not on a
    validation score itself: a model sure of its answers puts those at 0.99999 and 0.00001, and a
    threshold of 0.99999 would drop a test image scored 0.9998.
    """
    from sklearn.metrics import precision_recall_curve

    thresholds = np.full(targets.shape[1], DEFAULT_THRESHOLD)
    for c in range(targets.shape[1]):
        if targets[:, c].sum() == 0:
            continue
        scores = probabilities[:, c]
        precision, recall, cuts = precision_recall_curve(targets[:, c], scores)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], EPSILON)
        cut = float(cuts[int(np.argmax(f1))])
        dropped = scores[scores < cut]
        thresholds[c] = (cut + (float(dropped.max()) if dropped.size else 0.0)) / 2
    return thresholds


def binary_losses(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's binary cross-entropy, averaged over its classes, as Keras's loss computes it."""
    p = np.clip(probabilities, EPSILON, 1 - EPSILON)
    return -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p), axis=1)


def multilabel_metrics(
    targets: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray, class_names: list[str]
) -> dict:
    """mAP, micro/macro-F1, exact-match accuracy and the per-class table at ``thresholds``."""
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

    predicted = (probabilities >= thresholds).astype(int)
    present = targets.sum(axis=0) > 0
    ap = np.full(len(class_names), np.nan)
    for c in np.flatnonzero(present):
        ap[c] = average_precision_score(targets[:, c], probabilities[:, c])
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, average=None, zero_division=0
    )
    per_class = {
        name: {
            "ap": None if np.isnan(ap[c]) else float(ap[c]),
            "threshold": float(thresholds[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c, name in enumerate(class_names)
    }
    return {
        "map": float(np.nanmean(ap)) if present.any() else 0.0,
        "micro_f1": float(f1_score(targets, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(targets, predicted, average="macro", zero_division=0)),
        "accuracy": float(np.mean(np.all(predicted == targets, axis=1))) if len(targets) else 0.0,
        "per_class": per_class,
    }


def write_multilabel_predictions(
    files: list[str],
    targets: np.ndarray,
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    class_names: list[str],
    path: str | os.PathLike,
) -> Path:
    """``predictions.csv``: file, true and predicted classes (``a;b``), each class's probability, loss."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(["file", "true", "predicted", *(f"p_{name}" for name in class_names), "loss"])
    predicted = probabilities >= thresholds
    for file, truth, guess, row, loss in zip(
        files, targets, predicted, probabilities, binary_losses(targets, probabilities)
    ):
        writer.writerow(
            [
                file,
                LABEL_SEPARATOR.join(n for n, t in zip(class_names, truth) if t),
                LABEL_SEPARATOR.join(n for n, g in zip(class_names, guess) if g),
                *(f"{p:.6f}" for p in row),
                f"{loss:.6f}",
            ]
        )
    return write_text(path, buffer.getvalue())


@styled
def plot_precision_recall(
    targets: np.ndarray, probabilities: np.ndarray, per_class: dict, path: str | os.PathLike, title: str = ""
) -> Path:
    """Each class's precision-recall curve, its AP in the legend and its chosen threshold marked."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for c, (name, values) in enumerate(per_class.items()):
        if values["ap"] is None:
            continue
        precision, recall, _ = precision_recall_curve(targets[:, c], probabilities[:, c])
        (line,) = ax.step(recall, precision, where="post", lw=1.5, label=f"{name} (AP {values['ap']:.2f})")
        ax.plot(values["recall"], values["precision"], "o", color=line.get_color(), ms=5)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or "Precision-recall per class")
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)


def evaluate_multilabel(
    model: keras.Model,
    data: LabelledData,
    image_size: int,
    batch_size: int,
    run: Run,
    title: str,
    *,
    split: str = "test",
    tag: str = "",
    log=print,
    processes=None,
) -> dict:
    """Choose thresholds on validation, score ``split`` with them, write its predictions and plot.

    ``processes`` (a multihost run's cluster) share the predicting."""
    data.check_split("val", log=log)
    unreadable = data.check_split(split, log=log)
    val = data.val
    thresholds = choose_thresholds(
        val.label_array(), split_probabilities(model, val, image_size, batch_size, processes=processes)
    )
    images = getattr(data, split)
    targets = images.label_array()
    probabilities = split_probabilities(model, images, image_size, batch_size, processes=processes)
    write_multilabel_predictions(
        images.paths, targets, probabilities, thresholds, data.class_names, run.predictions_path(tag)
    )
    summary = multilabel_metrics(targets, probabilities, thresholds, data.class_names)
    if not tag:
        plot_precision_recall(
            targets, probabilities, summary["per_class"], run.precision_recall_path, f"{title}: {split}"
        )
    return {
        "task": "multilabel",
        f"{split}_loss": float(binary_losses(targets, probabilities).mean()) if len(targets) else 0.0,
        f"{split}_accuracy": summary["accuracy"],
        f"{split}_map": summary["map"],
        f"{split}_micro_f1": summary["micro_f1"],
        f"{split}_macro_f1": summary["macro_f1"],
        f"{split}_examples": int(len(targets)),
        "thresholds": {name: float(t) for name, t in zip(data.class_names, thresholds)},
        "per_class": summary["per_class"],
        "class_names": data.class_names,
        f"{split}_skipped": unreadable,
        "skipped_files": len(data.skipped),
    }
