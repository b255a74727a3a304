"""A run directory: the one class that knows its layout, its config schema and its state.

``runs/<name>/`` holds ``config.json`` (the resolved configuration), ``history.csv``,
``curves.png``, ``confusion.png``, ``metrics.json``, ``predictions.csv`` (per test
image), ``reliability.png``, ``mistakes.png``, ``report.html``, ``explain/``, ``model.keras``, ``features/``,
``backup/`` (Keras's ``BackupAndRestore`` state), ``tensorboard/``,
``skipped_files.txt`` and ``.lock``. Everything else asks this class for a path or a
fact ("finished?", "resumable?") instead of spelling a file name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.files import write_json
from kerasimg.locks import exclusive


class Run:
    """The run directory at ``path`` (which need not exist yet)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # The layout.
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def curves_path(self) -> Path:
        return self.path / "curves.png"

    @property
    def confusion_path(self) -> Path:
        return self.path / "confusion.png"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    def predictions_path(self, tag: str = "") -> Path:
        """``predictions.csv`` (the run's test split), else ``predictions-<tag>.csv``: one row per image."""
        return self.path / _tagged("predictions", tag, ".csv")

    def mistakes_path(self, tag: str = "") -> Path:
        """The highest-loss images of the same split as ``predictions_path(tag)``."""
        return self.path / _tagged("mistakes", tag, ".png")

    @property
    def reliability_path(self) -> Path:
        return self.path / "reliability.png"

    @property
    def precision_recall_path(self) -> Path:
        """A multi-label run's per-class precision-recall curves on the test split."""
        return self.path / "precision_recall.png"

    @property
    def explain_dir(self) -> Path:
        """Where ``python -m kerasimg.explain`` writes its overlays when no ``--out`` is given."""
        return self.path / "explain"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def head_weights_path(self) -> Path:
        """The best head of a cached-feature phase, before it is put back on the classifier."""
        return self.path / "head-best.weights.h5"

    @property
    def features_dir(self) -> Path:
        return self.path / "features"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def skipped_path(self) -> Path:
        return self.path / "skipped_files.txt"

    def tracker_id_path(self, tracker: str) -> Path:
        """The id of this run in ``tracker`` (e.g. MLflow's run id), so ``--resume`` logs to the same run."""
        return self.path / f"{tracker}_run_id.txt"

    def backup_dir(self, phase_index: int) -> Path:
        return self.path / "backup" / f"phase-{phase_index}"

    # State.
    @property
    def exists(self) -> bool:
        """Whether a run was started here (its config was written)."""
        return self.config_path.exists()

    @property
    def finished(self) -> bool:
        """Whether training and evaluation completed (``metrics.json`` is written last)."""
        return self.metrics_path.exists()

    @property
    def has_model(self) -> bool:
        return self.model_path.exists()

    def require_model(self) -> Path:
        """``model.keras``, or one line saying the run has not saved one yet."""
        if not self.has_model:
            raise UserError(f"{self.path} has no trained model yet ({self.model_path.name} is missing).")
        return self.model_path

    def check_usable(self) -> None:
        """Refuse a ``path`` that is a file (``holds_other_files`` tells a folder of other things)."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"The run directory {self.path} is a file; choose another --out.")

    @property
    def holds_other_files(self) -> bool:
        """A folder that is not empty (but for our lock and feature caches placed for it, as
        ``tune recipe`` links them) and holds no run: not ours to write into."""
        if not self.path.is_dir() or self.exists:
            return False
        return any(p.name not in (".lock", self.features_dir.name) for p in self.path.iterdir())

    def lock(self):
        """Hold the run for this process's life: a second ``fit`` on it is refused with our PID."""
        self.check_usable()
        return exclusive(self.path / ".lock", f"The run directory {self.path}")

    # The config schema: {"format": 2, "arguments": the FitConfig as given, "resolved": what it
    # resolved to (schedule, epochs, phases, image_size, finetune_lr, train_bn, precision, replicas),
    # and facts about the run: class_names, data_summary, backbone_spec, parameters,
    # flops_per_image, versions, created}.
    def read_config(self) -> dict:
        """``config.json`` in the current format; one clear line when it is missing or not JSON."""
        return _current_format(_read_json(self.config_path, f"{self.path} is not a kerasimg run directory"))

    def write_config(self, config: dict) -> None:
        write_json(self.config_path, config)

    def read_metrics(self) -> dict:
        return _read_json(self.metrics_path, f"The run in {self.path} has not been evaluated")

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_path, metrics)

    def clear_evaluation(self) -> None:
        """Forget the evaluation, so an extended run is unfinished until it is evaluated again."""
        self.metrics_path.unlink(missing_ok=True)

    def clear_backups_except(self, keep: int) -> None:
        """Delete finished phases' backups; the last one stays so ``--epochs`` can extend the run."""
        backup = self.path / "backup"
        if backup.is_dir():
            for folder in backup.iterdir():
                if folder != self.backup_dir(keep):
                    shutil.rmtree(folder, ignore_errors=True)


def _tagged(stem: str, tag: str, suffix: str) -> str:
    return f"{stem}-{tag}{suffix}" if tag else f"{stem}{suffix}"


def _read_json(path: Path, missing: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{missing}: {path.name} is missing.") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "restore it or start a new run."
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path} should hold a JSON object. Received: {type(value).__name__}")
    return value


CONFIG_FORMAT = 2
# The first format kept the arguments at the top level, some rewritten to their resolved
# values, and the other resolved values under these names.
_FIRST_FORMAT_RESOLVED = {
    "schedule": "schedule",
    "epochs": "epochs",
    "phases": "phases",
    "image_size": "image_size",
    "finetune_lr": "resolved_finetune_lr",
    "train_bn": "resolved_train_bn",
    "precision": "resolved_precision",
    "replicas": "replicas",
}
_FACTS = (
    "class_names",
    "data_summary",
    "backbone_spec",
    "parameters",
    "flops_per_image",
    "versions",
    "created",
)


def _current_format(saved: dict) -> dict:
    """A config of either format, in the current one (runs of the first format still resume)."""
    if saved.get("format") == CONFIG_FORMAT:
        if not all(isinstance(saved.get(part), dict) for part in ("arguments", "resolved")):
            raise UserError(
                "This run's config.json lacks its arguments or resolved settings; restore it or start "
                "a new run."
            )
        return saved
    if "format" in saved:
        raise UserError(
            f"This run's config.json has format {saved['format']!r}, which this kerasimg does not know "
            f"(it writes format {CONFIG_FORMAT}); use the kerasimg version that wrote it."
        )
    resolved = {new: saved[old] for new, old in _FIRST_FORMAT_RESOLVED.items() if old in saved}
    arguments = {
        k: v for k, v in saved.items() if k not in _FACTS and k not in _FIRST_FORMAT_RESOLVED.values()
    }
    for name in ("schedule", "epochs", "image_size"):  # arguments the first format kept only resolved
        arguments.setdefault(name, saved.get(name))
    facts = {k: saved[k] for k in _FACTS if k in saved}
    return {"format": CONFIG_FORMAT, "arguments": arguments, "resolved": resolved, **facts}
