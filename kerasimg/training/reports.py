"""What a run leaves for people to read: curves, confusion matrix, per-class metrics."""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from kerasimg.files import save_figure, write_text  # noqa: E402

# One look for every figure a run leaves (set per figure, so a user's own matplotlib settings are untouched).
FIGURE_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.prop_cycle": matplotlib.cycler(color=["#0969da", "#d1242f", "#1a7f37", "#8250df", "#bc4c00"]),
}


def styled(plot):
    """Draw (and save) ``plot``'s figure under ``FIGURE_STYLE``."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with plt.rc_context(FIGURE_STYLE):
            return plot(*args, **kwargs)

    return wrapper


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of ``history.csv``, one per epoch; a re-run epoch (after a resume) keeps its last row."""
    path = Path(path)
    if not path.exists():
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                epoch = int(row["epoch"])
                by_epoch[epoch] = {k: float(v) for k, v in row.items() if v not in ("", None)}
            except (KeyError, ValueError):
                continue
    return [by_epoch[e] for e in sorted(by_epoch)]


def best_val_accuracy(path: str | os.PathLike) -> float | None:
    """The best validation accuracy in a history file, if any: an interrupted or extended run's to beat."""
    return max((r["val_accuracy"] for r in read_history(path) if "val_accuracy" in r), default=None)


def write_history(path: str | os.PathLike, rows: list[dict[str, float]]) -> None:
    """Rewrite ``history.csv`` with one row per epoch."""
    if not rows:
        return
    columns = ["epoch"] + sorted({k for row in rows for k in row} - {"epoch"})
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(_fmt(row.get(c), c) for c in columns))
    write_text(path, "\n".join(lines) + "\n")


def _fmt(value, column: str) -> str:
    if value is None:
        return ""
    return str(int(value)) if column == "epoch" else repr(float(value))


@styled
def plot_curves(
    rows: list[dict[str, float]],
    path: str | os.PathLike,
    title: str = "",
    boundaries: list[int] | None = None,
) -> Path | None:
    """Train and validation loss and accuracy per epoch, phase boundaries dashed."""
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "-s")):
            values = [r.get(key) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=label, ms=3)
        for boundary in boundaries or []:
            ax.axvline(boundary + 0.5, color="grey", ls="--", lw=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1.02)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predictions, int)), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, class_names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    true_positive = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0
    )
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)
    }


@styled
def plot_confusion(
    matrix: np.ndarray, class_names: list[str], path: str | os.PathLike, title: str = ""
) -> Path:
    """Row-normalised colours with the raw counts written in each cell."""
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (test)")
    return save_figure(fig, path)
