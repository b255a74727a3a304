"""The worst mistakes: the highest-loss images of a split, as fastai's ``plot_top_losses`` shows them."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from kerasimg.data import FileSplit, load_image
from kerasimg.data.pipeline import resize
from kerasimg.diagnose.plots import plot_mistakes
from kerasimg.diagnose.predictions import Predictions

MISTAKES = 12


def load_images(split, indices, image_size: int) -> np.ndarray:
    """Images ``indices`` of a split (files or a TFDS split), 0-255 at ``image_size``."""
    indices = [int(i) for i in indices]
    if not indices:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    if isinstance(split, FileSplit):
        return np.stack([load_image(split.paths[i], image_size).numpy() for i in indices])
    wanted, found = set(indices), {}
    for i, (image, _) in enumerate(split.images()):
        if i in wanted:
            found[i] = resize(image, image_size).numpy()
            if len(found) == len(wanted):
                break
    return np.stack([found[i] for i in indices])


def write_mistakes(
    predictions: Predictions,
    split,
    path: str | os.PathLike,
    image_size: int,
    *,
    count: int = MISTAKES,
    title: str = "",
    explain: tuple[keras.Model, str] | None = None,
) -> Path:
    """Draw the ``count`` highest-loss images with true/predicted class and probability.

    ``explain=(model, backbone)`` overlays Grad-CAM for the predicted class: where the
    model found the evidence for its (wrong) answer.
    """
    worst = predictions.worst(count)
    images = load_images(split, worst, image_size)
    names = predictions.class_names
    captions = []
    for i in worst:
        guess = predictions.predicted[i]
        captions.append(
            f"{Path(predictions.files[i]).name}\ntrue {names[predictions.labels[i]]}, "
            f"predicted {names[guess]} ({predictions.probabilities[i, guess]:.0%})\n"
            f"loss {predictions.losses[i]:.2f}"
        )
    heatmaps = None
    if explain is not None and len(images):
        from kerasimg.diagnose.gradcam import grad_cam

        model, backbone = explain
        heatmaps, _ = grad_cam(model, images, backbone, predictions.predicted[worst])
    return plot_mistakes(images, captions, path, title or "Highest-loss images", heatmaps)
