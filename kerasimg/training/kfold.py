"""k-fold cross-validation (``fit --folds K``): K ordinary runs and one summary of their metrics.

Each fold is a complete run in ``OUT/fold-k/`` (``config.json`` records ``folds`` and
``fold``, so ``evaluate``, ``export`` and ``--resume`` rebuild its splits): it validates on
fold k of a stratified partition of train and validation together and is tested on the
same held-out test split as every other fold. ``OUT/folds.json`` and ``folds.csv`` give
each fold's metrics and each metric's mean and standard deviation. Running the same
command again with the same ``--out`` skips finished folds and resumes an interrupted one,
so a crash costs at most the epoch it was in.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasimg.errors import UserError
from kerasimg.files import write_json, write_text
from kerasimg.models.registry import name_slug
from kerasimg.training.config import FitConfig
from kerasimg.training.driver import FitResult, fit
from kerasimg.training.reports import read_history
from kerasimg.training.resume import load_run_config
from kerasimg.training.run import Run

SUMMARY_FILE = "folds.json"
# What the summary averages: the best epoch's validation accuracy (the cross-validation estimate) and
# the test metrics of each fold's model on the shared test split.
SUMMARY_METRICS = (
    "val_accuracy",
    "test_accuracy",
    "test_balanced_accuracy",
    "test_macro_f1",
    "test_ece",
    "test_loss",
)
# Settings that may differ between two launches of one k-fold run: where it goes, which fold runs.
_PER_LAUNCH = ("out", "fold", "connect_timeout", "config")


@dataclass
class FoldsResult:
    run_dir: Path  # the folder that holds fold-1 .. fold-K and folds.json
    runs: list[FitResult]
    mean: dict[str, float]
    std: dict[str, float]  # the sample standard deviation (ddof=1) over the folds


def fit_folds(config: FitConfig, *, callbacks: list | None = None, log=print) -> FoldsResult:
    """Train every fold of ``config.folds`` in turn (finished folds are kept) and summarise them."""
    config.validate()
    root = Path(config.out) if config.out else _default_root(config)
    _claim(root, config)
    results = []
    for k in range(1, config.folds + 1):
        out = root / f"fold-{k}"
        run = Run(out)
        if run.finished:
            log(f"Fold {k}/{config.folds}: finished earlier in {out}, kept.")
            results.append(_result_of(run))
            continue
        log(f"Fold {k}/{config.folds}: {'resuming' if run.exists else 'training'} in {out}")
        if run.exists:
            results.append(fit(load_run_config(out), resume=True, callbacks=callbacks, log=log))
        else:
            fold_config = dataclasses.replace(config, fold=k, out=str(out))
            results.append(fit(fold_config, callbacks=callbacks, log=log))
    mean, std = summarise(results)
    rows = [{"fold": k, "run": r.run_dir.name, **_row(r)} for k, r in enumerate(results, 1)]
    write_json(root / SUMMARY_FILE, {**_identity(config), "runs": rows, "mean": mean, "std": std})
    header = ["fold", "run", *SUMMARY_METRICS]
    lines = [",".join(header)] + [",".join(str(row.get(key, "")) for key in header) for row in rows]
    lines += [",".join(["mean", "", *(str(mean.get(m, "")) for m in SUMMARY_METRICS)])]
    lines += [",".join(["std", "", *(str(std.get(m, "")) for m in SUMMARY_METRICS)])]
    write_text(root / "folds.csv", "\n".join(lines) + "\n")
    return FoldsResult(root, results, mean, std)


def summarise(results: list[FitResult]) -> tuple[dict[str, float], dict[str, float]]:
    """Each summary metric's mean and sample standard deviation over the folds that report it."""
    mean, std = {}, {}
    for metric in SUMMARY_METRICS:
        values = [row[metric] for row in map(_row, results) if row.get(metric) is not None]
        if values:
            mean[metric] = float(np.mean(values))
            std[metric] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def _row(result: FitResult) -> dict:
    """One fold's summary metrics: the test metrics, and the validation accuracy of its best epoch."""
    row = {m: result.metrics.get(m) for m in SUMMARY_METRICS if m != "val_accuracy"}
    history = read_history(Run(result.run_dir).history_path)
    best = result.metrics.get("best_epoch")
    chosen = [r for r in history if best is not None and int(r["epoch"]) + 1 == best]
    row["val_accuracy"] = chosen[0].get("val_accuracy") if chosen else None
    return row


def _result_of(run: Run) -> FitResult:
    metrics = run.read_metrics()
    return FitResult(
        run_dir=run.path,
        test_accuracy=metrics["test_accuracy"],
        test_loss=metrics["test_loss"],
        best_epoch=metrics["best_epoch"],
        seconds=metrics.get("train_seconds", 0.0),
        metrics=metrics,
    )


def _identity(config: FitConfig) -> dict:
    """What makes two launches the same k-fold run: every setting but where and which fold."""
    arguments = {k: v for k, v in dataclasses.asdict(config).items() if k not in _PER_LAUNCH}
    return {"folds": config.folds, "arguments": arguments}


def _claim(root: Path, config: FitConfig) -> None:
    """Refuse a folder that holds a single run or another k-fold run; record this one's settings."""
    if Run(root).exists:
        raise UserError(f"{root} holds a single run (config.json); give --folds another --out.")
    summary = root / SUMMARY_FILE
    if summary.exists():
        try:
            recorded = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"{summary} is not readable JSON; move it away to start over.") from None
        if {k: recorded.get(k) for k in ("folds", "arguments")} != _identity(config):
            raise UserError(
                f"{root} holds a k-fold run with other settings (see {summary}); give another --out, or the "
                "same settings to continue it."
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    write_json(summary, {**_identity(config), "runs": []})


def _default_root(config: FitConfig) -> Path:
    """``runs/<date>-<backbone>-<data>-Kfolds/``, named (and kept apart when taken) as a run's folder is."""
    data = config.data.split(":", 1)[-1] if config.data.startswith("tfds:") else Path(config.data).stem
    return config.resolve().run_dir(f"{name_slug(data) or 'data'}-{config.folds}folds")
