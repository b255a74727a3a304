"""The evaluation every run ends with, and ``python -m kerasimg.evaluate`` repeats for any split.

Per-image predictions (``predictions.csv``), the metrics people compare on, the
confusion matrix, the reliability diagram and the highest-loss images.
"""

from __future__ import annotations

import keras

from kerasimg.data import LabelledData
from kerasimg.diagnose.metrics import classification_metrics
from kerasimg.diagnose.mistakes import MISTAKES, write_mistakes
from kerasimg.diagnose.plots import plot_reliability
from kerasimg.diagnose.predictions import Predictions, predict_split, write_predictions
from kerasimg.training import reports
from kerasimg.training.run import Run


def evaluate(
    model: keras.Model,
    data: LabelledData,
    image_size: int,
    batch_size: int,
    run: Run,
    title: str,
    *,
    backbone: str | None = None,
    split: str = "test",
    tag: str = "",
    mistakes: int = MISTAKES,
) -> dict:
    """Predict ``split`` of ``data``, write its ``predictions.csv`` and ``mistakes.png``, return its metrics.

    ``tag`` names the files (``predictions-<tag>.csv``); the run's own test split
    (no tag) also redraws ``confusion.png`` and ``reliability.png``. ``backbone``
    overlays Grad-CAM on the mistakes.
    """
    images = getattr(data, split)
    predictions = predict_split(model, images, data.class_names, image_size, batch_size)
    write_predictions(predictions, run.predictions_path(tag))
    summary = classification_metrics(predictions.labels, predictions.probabilities, data.class_names)
    if not tag:
        reports.plot_confusion(
            summary["confusion_matrix"], data.class_names, run.confusion_path, f"{title}: {split}"
        )
        plot_reliability(
            summary["calibration_bins"], summary["ece"], run.reliability_path, f"{title}: {split}"
        )
    explain = (model, backbone) if backbone else None
    write_mistakes(
        predictions,
        images,
        run.mistakes_path(tag),
        image_size,
        count=mistakes,
        title=f"{title}: highest-loss {split} images",
        explain=explain,
    )
    return split_metrics(predictions, summary, split)


def split_metrics(predictions: Predictions, summary: dict, split: str) -> dict:
    """``metrics.json``'s keys for one split (``test_accuracy``, ``test_macro_f1``...)."""
    return {
        f"{split}_loss": float(predictions.losses.mean()) if len(predictions) else 0.0,
        f"{split}_accuracy": summary["accuracy"],
        "top_k": summary["top_k"],
        f"{split}_top_k_accuracy": summary["top_k_accuracy"],
        f"{split}_balanced_accuracy": summary["balanced_accuracy"],
        f"{split}_macro_f1": summary["macro_f1"],
        f"{split}_ece": summary["ece"],
        "ece_bins": len(summary["calibration_bins"]),
        f"{split}_examples": int(len(predictions)),
        "per_class": summary["per_class"],
        "confusion_matrix": summary["confusion_matrix"].tolist(),
        "calibration": summary["calibration_bins"],
        "class_names": predictions.class_names,
    }
