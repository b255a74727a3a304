"""The test-split evaluation every run ends with: loss, accuracy, per-class metrics, the confusion plot."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasimg.data import LabelledData, image_dataset
from kerasimg.data.splits import FileSplit
from kerasimg.training import reports


def predict_probabilities(model: keras.Model, images, tta: str = "none") -> np.ndarray:
    """Class probabilities for a dataset of image batches, averaged over the mirror with ``tta="flip"``."""
    # predict() rather than predict_on_batch(): under MirroredStrategy the latter returns every
    # replica's copy of the batch. The pipelines are ordered, so labels line up.
    probabilities = model.predict(images, verbose=0)
    if tta == "flip":
        mirrored = model.predict(images.map(tf.image.flip_left_right), verbose=0)
        probabilities = (probabilities + mirrored) / 2
    return probabilities


def evaluate(
    model: keras.Model,
    data: LabelledData,
    image_size: int,
    batch_size: int,
    confusion_path: Path,
    title: str,
    tta: str = "none",
) -> dict:
    """Test loss and accuracy, per-class precision/recall/F1, and the confusion matrix plot.

    The metrics are the model's as exported and served. ``tta="flip"`` adds, under
    ``"tta"``, the accuracy and loss of averaging each image's and its mirror's
    probabilities (the exported signatures do not mirror).
    """
    test_ds = image_dataset(data.test, image_size, batch_size, training=False)
    images = test_ds.map(lambda images, _: images)
    probabilities = predict_probabilities(model, images)
    if isinstance(data.test, FileSplit):  # the labels are known without decoding every image again
        labels = np.asarray(data.test.labels, np.int64)
    else:
        labels = np.concatenate([batch_labels.numpy() for _, batch_labels in test_ds])
    predictions = probabilities.argmax(axis=1)
    matrix = reports.confusion_matrix(labels, predictions, data.num_classes)
    reports.plot_confusion(matrix, data.class_names, confusion_path, f"{title}: test")
    metrics = {
        "test_loss": _loss(probabilities, labels),
        "test_accuracy": float(np.mean(predictions == labels)),
        "test_examples": int(len(labels)),
        "per_class": reports.per_class_metrics(matrix, data.class_names),
        "confusion_matrix": matrix.tolist(),
        "class_names": data.class_names,
    }
    if tta != "none":
        averaged = predict_probabilities(model, images, tta)
        metrics["tta"] = {
            "mode": tta,
            "test_accuracy": float(np.mean(averaged.argmax(axis=1) == labels)),
            "test_loss": _loss(averaged, labels),
        }
    return metrics


def _loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1))))
