"""Per-image predictions of a split: the table every other diagnosis (loss ranking, calibration) reads.

``predictions.csv`` has one row per image: the file, its true and predicted class,
the probability of every class and the image's cross-entropy loss, in the split's
order. Sorting it by loss finds the worst mistakes, and on the training split the
files most likely mislabelled.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasimg.data import FileSplit, image_dataset
from kerasimg.data.pipeline import split_length
from kerasimg.errors import UserError
from kerasimg.files import write_text
from kerasimg.tables import csv_value, csv_writer

# Probabilities are clipped here before the log, as Keras's crossentropy clips by its epsilon.
EPSILON = 1e-7
FIXED_COLUMNS = ("file", "true", "predicted")


@dataclass
class Predictions:
    """What a model said about each image of one split."""

    files: list[str]
    labels: np.ndarray  # [N] true class indices
    probabilities: np.ndarray  # [N, C]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.files)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def losses(self) -> np.ndarray:
        """Each image's cross-entropy, ``-log p(true class)``."""
        true = self.probabilities[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(true, EPSILON, 1.0))

    def one_class_warning(self, split: str) -> str | None:
        """A line when every image got the same answer though the split holds several classes:
        a model that learned nothing (often BatchNorm statistics that never settled)."""
        answers = np.unique(self.predicted)
        if len(self) < 2 or len(answers) != 1 or len(np.unique(self.labels)) < 2:
            return None
        name = self.class_names[int(answers[0])]
        return (
            f"Warning: the model predicts {name!r} for every one of the {len(self)} {split} images: it "
            "has learned nothing that separates the classes (train longer, lower --lr, or start from "
            "pretrained --weights)."
        )

    def worst(self, count: int) -> np.ndarray:
        """Indices of the ``count`` highest-loss images, worst first (ties keep the split's order)."""
        return np.argsort(-self.losses, kind="stable")[:count]


def predict_split(
    model: keras.Model,
    split,
    class_names: list[str],
    image_size: int,
    batch_size: int,
    *,
    processes=None,
) -> Predictions:
    """Run ``model`` over a labelled split in order.

    The evaluation pipeline keeps the split's order, so files and labels line up with the
    rows. ``processes`` (a multihost run's cluster) each predict their own share of it.
    """
    probabilities = split_probabilities(model, split, image_size, batch_size, processes=processes)
    if isinstance(split, FileSplit):  # the labels are known without decoding every image again
        files, labels = list(split.paths), np.asarray(split.labels, np.int64)
    elif hasattr(split, "names"):  # a packed split: its file names, read from the records in this order
        files, labels = split.names()
    else:
        dataset = image_dataset(split, image_size, batch_size, training=False)
        labels = np.concatenate([batch_labels.numpy() for _, batch_labels in dataset]).astype(np.int64)
        files = [f"{split}#{i}" for i in range(len(labels))]
    return Predictions(files, labels, probabilities, list(class_names))


def split_probabilities(
    model: keras.Model, split, image_size: int, batch_size: int, *, processes=None, mirrored: bool = False
) -> np.ndarray:
    """``model``'s outputs on every image of ``split`` (``mirrored``: flipped left to right), in order.

    ``predict()`` rather than ``predict_on_batch()``: under MirroredStrategy the latter
    returns every replica's copy of the batch. ``processes`` (a multihost run's cluster, or a
    single process's) predict the share each is given of the images and return all of them.
    """

    def images(shard):
        batches = image_dataset(split, image_size, batch_size, training=False, shard=shard)
        batches = batches.map(lambda x, *_: x)
        return batches.map(tf.image.flip_left_right) if mirrored else batches

    if processes is None:
        return np.asarray(model.predict(images(None), verbose=0), np.float64)
    return processes.predict(model, images, split_length(split), batch_size)


def write_predictions(predictions: Predictions, path: str | os.PathLike) -> Path:
    """``file,true,predicted,p_<class>...,loss`` (probabilities to 6 decimals)."""
    names = predictions.class_names
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow([*FIXED_COLUMNS, *(f"p_{name}" for name in names), "loss"])
    for file, label, guess, row, loss in zip(
        predictions.files,
        predictions.labels,
        predictions.predicted,
        predictions.probabilities,
        predictions.losses,
    ):
        writer.writerow([file, names[label], names[guess], *(f"{p:.6f}" for p in row), f"{loss:.6f}"])
    return write_text(path, buffer.getvalue())


def read_predictions(path: str | os.PathLike) -> Predictions:
    """A ``predictions.csv`` back; one clear line when it is missing or not one."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [[csv_value(cell) for cell in row] for row in csv.reader(f)]
    except FileNotFoundError:
        raise UserError(
            f"No predictions at {path}: run `python -m kerasimg.evaluate` on the run first."
        ) from None
    header = rows[0] if rows else []
    names = [c[2:] for c in header[len(FIXED_COLUMNS) : -1]]
    if tuple(header[: len(FIXED_COLUMNS)]) != FIXED_COLUMNS or not names or header[-1] != "loss":
        raise UserError(f"{path} is not a kerasimg predictions.csv (its header is {header[:4]}...).")
    index = {name: i for i, name in enumerate(names)}
    body = rows[1:]
    return Predictions(
        [r[0] for r in body],
        np.asarray([index[r[1]] for r in body], np.int64),
        np.asarray([[float(v) for v in r[3:-1]] for r in body], np.float64).reshape(len(body), len(names)),
        names,
    )
