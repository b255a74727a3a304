"""The diagnosis figures: the reliability diagram and the worst-mistakes grid."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from kerasimg.files import save_figure
from kerasimg.training.reports import plt, styled


@styled
def plot_reliability(bins: list[dict], ece: float, path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy against confidence per bin (bars), the diagonal a calibrated model follows, counts below."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    width = bins[0]["high"] - bins[0]["low"]
    filled = [b for b in bins if b["count"]]  # empty bins draw nothing
    centres = [(b["low"] + b["high"]) / 2 for b in filled]
    accuracy = [b["accuracy"] for b in filled]
    confidence = [b["confidence"] for b in filled]
    top.bar(centres, accuracy, width=width, edgecolor="black", color="tab:blue", label="accuracy")
    # The gap spans accuracy to mean confidence, whichever is higher (under- or over-confident).
    top.bar(
        centres,
        np.abs(np.array(confidence) - np.array(accuracy)),
        bottom=np.minimum(confidence, accuracy),
        width=width,
        facecolor="none",
        edgecolor="tab:red",
        hatch="///",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    # Above the axes, not over the bars: the low-confidence corner it used to sit in is where bars are.
    top.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, handlelength=1.5)
    fig.suptitle(f"{title + ': ' if title else ''}ECE {ece:.3f} ({len(bins)} bins)")
    bottom.bar(centres, [b["count"] for b in filled], width=width, color="grey", edgecolor="black")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    return save_figure(fig, path)


@styled
def plot_mistakes(
    images: np.ndarray,
    captions: list[str],
    path: str | os.PathLike,
    title: str = "",
    heatmaps: np.ndarray | None = None,
) -> Path:
    """A grid of images (0-255) with a caption each; Grad-CAM maps (0-1) overlaid when given."""
    count = max(1, len(images))
    columns = min(4, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, caption) in enumerate(zip(images, captions)):
        ax = axes.flat[i]
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
        if heatmaps is not None:
            ax.imshow(
                heatmaps[i],
                cmap="jet",
                alpha=0.4,
                interpolation="bilinear",
                vmin=0,
                vmax=1,
                extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5),
            )
        ax.set_title(caption, fontsize=10)
    if not len(images):
        axes.flat[0].text(0.5, 0.5, "no images", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
