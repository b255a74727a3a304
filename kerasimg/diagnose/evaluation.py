"""The evaluation every run ends with, and ``python -m kerasimg.evaluate`` repeats for any split.

Per-image predictions (``predictions.csv``), the metrics people compare on, the
confusion matrix, the reliability diagram and the highest-loss images.
"""

from __future__ import annotations

import keras
import numpy as np

from kerasimg.data import LabelledData
from kerasimg.diagnose.metrics import classification_metrics
from kerasimg.diagnose.mistakes import MISTAKES, write_mistakes
from kerasimg.diagnose.multilabel_evaluation import evaluate_multilabel
from kerasimg.diagnose.plots import plot_reliability
from kerasimg.diagnose.predictions import Predictions, predict_split, split_probabilities, write_predictions
from kerasimg.diagnose.report import write_run_report
from kerasimg.training import after_fit, reports
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
    tta: str = "none",
    log=print,
    processes=None,
) -> dict:
    """Predict ``split`` of ``data``, write its ``predictions.csv`` and ``mistakes.png``, return its metrics.

    ``tag`` names the files (``predictions-<tag>.csv``); the run's own test split
    (no tag) also redraws ``confusion.png`` and ``reliability.png``. ``backbone``
    overlays Grad-CAM on the mistakes. The metrics are the model's as exported and
    served; ``tta="flip"`` adds, under ``"tta"``, the accuracy and loss of averaging each
    image's and its mirror's probabilities (the exported signatures do not mirror). Multi-label
    data is scored as ``kerasimg.diagnose.multilabel_evaluation`` says. ``processes`` (a
    multihost run's cluster) share the predicting.
    """
    if data.multilabel:
        return evaluate_multilabel(
            model,
            data,
            image_size,
            batch_size,
            run,
            title,
            split=split,
            tag=tag,
            log=log,
            processes=processes,
        )
    unreadable = data.check_split(split)  # with --verify pipeline, its files are checked now
    images = getattr(data, split)
    predictions = predict_split(model, images, data.class_names, image_size, batch_size, processes=processes)
    write_predictions(predictions, run.predictions_path(tag))
    if warning := predictions.one_class_warning(split):
        log(warning)
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
    metrics = split_metrics(predictions, summary, split)
    # What mistakes.png shows, so the report's caption follows what was drawn.
    metrics["mistakes_grad_cam"] = explain is not None
    # Unreadable files are never lost silently: those of this split, and of the whole run so far.
    metrics.update({f"{split}_skipped": unreadable, "skipped_files": len(data.skipped)})
    if tta != "none":
        mirrored = split_probabilities(
            model, images, image_size, batch_size, processes=processes, mirrored=True
        )
        averaged = (predictions.probabilities + mirrored) / 2
        labels = predictions.labels
        picked = averaged[np.arange(len(labels)), labels]
        metrics["tta"] = {
            "mode": tta,
            f"{split}_accuracy": float(np.mean(averaged.argmax(axis=1) == labels)),
            f"{split}_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1)))),
        }
    return metrics


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


class _Diagnosis:
    """The after-fit step every run ends with: evaluate on the test split, then write ``report.html``."""

    def evaluate(self, finished: after_fit.Finished) -> dict:
        return evaluate(
            finished.model,
            finished.data,
            finished.image_size,
            finished.batch_size,
            finished.run,
            finished.title,
            backbone=finished.backbone,
            tta=finished.tta,
            log=finished.log,
            processes=finished.processes,
        )

    def report(self, run: Run) -> None:
        write_run_report(run.path)


after_fit.register(_Diagnosis())
