"""Evaluate a finished run again: any split of its own data, or another dataset with the same classes.

The highest-loss rows of ``predictions-train.csv`` are the training files most
likely mislabelled; another dataset's predictions show how the model transfers.
The run's own test split rewrites ``predictions.csv`` and adds any metric this
kerasimg computes to ``metrics.json`` (so older runs gain the newer columns).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kerasimg.data import load_data
from kerasimg.data.sources import run_data_settings
from kerasimg.diagnose.evaluation import evaluate
from kerasimg.diagnose.mistakes import MISTAKES
from kerasimg.errors import ArgumentError, UserError
from kerasimg.models import load_classifier
from kerasimg.serving.zoo import DEFAULT_ZOO
from kerasimg.training.run import Run

SPLITS = ("test", "val", "train")


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    data: str | None = None,
    split: str = "test",
    batch_size: int = 32,
    explain: bool = False,
    mistakes: int = MISTAKES,
    zoo: str | os.PathLike = DEFAULT_ZOO,
    log=print,
) -> dict:
    """Predict ``split`` of ``data`` (default: the run's own) with the run's best model.

    Writes ``predictions[-TAG].csv`` and ``mistakes[-TAG].png`` into the run directory
    (TAG is empty for the run's own test split, the split otherwise, and the dataset's
    name and split for other data) and returns the split's metrics with
    ``predictions_path`` and ``mistakes_path``. ``mistakes`` is how many highest-loss images
    are drawn; ``explain`` overlays Grad-CAM on them. The refreshed ``report.html`` lists
    the run's exports in ``zoo``.
    """
    if split not in SPLITS:
        raise ArgumentError("split", f"must be one of {', '.join(SPLITS)}", split)
    if mistakes < 1:
        raise ArgumentError("mistakes", "must be at least 1", mistakes)
    if batch_size < 1:
        raise ArgumentError("batch_size", "must be at least 1", batch_size)
    run = Run(run_dir)
    config = run.read_config()
    run.require_model()
    arguments = config["arguments"]
    own = data is None or data == arguments["data"]
    settings = run_data_settings(arguments)
    if not own:  # another data set: the run's CSV root and folds are not its
        settings.update(image_dir=None, folds=None, fold=None)
    loaded = load_data(arguments["data"] if own else data, **settings, log=log)
    if loaded.class_names != config["class_names"]:
        raise UserError(
            f"{data} has classes {loaded.class_names}, but the run in {run.path} was trained on "
            f"{config['class_names']}; evaluate only on data with the same class folders."
        )
    if len(getattr(loaded, split)) == 0:
        raise UserError(f"The {split} split of {loaded.name} is empty; choose another --split.")
    tag = "" if own and split == "test" else split if own else f"{_file_safe(loaded.name)}-{split}"
    model = load_classifier(run.model_path, config["class_names"])
    backbone = arguments["backbone"]
    metrics = evaluate(
        model,
        loaded,
        int(config["resolved"]["image_size"]),
        batch_size,
        run,
        f"{backbone} on {loaded.name}",
        backbone=backbone if explain else None,
        split=split,
        tag=tag,
        mistakes=mistakes,
        log=log,
    )
    if not tag and run.finished:
        from kerasimg.diagnose.report import write_run_report

        run.write_metrics({**run.read_metrics(), **metrics})
        write_run_report(run.path, zoo)
    return {**metrics, "predictions_path": run.predictions_path(tag), "mistakes_path": run.mistakes_path(tag)}


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or name).strip("._") or "data"
