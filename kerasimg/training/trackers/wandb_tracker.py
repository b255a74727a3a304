"""``--tracker wandb``: Weights & Biases, online after ``wandb login`` or offline with ``WANDB_MODE=offline``.

W&B's local files go into the run folder (``<run>/wandb/``, unless ``WANDB_DIR`` says elsewhere), so an
offline run travels with its folder and ``wandb sync <run>/wandb/offline-run-*`` uploads it later. The
run's files are logged as one artifact named after the run folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.files import write_text
from kerasimg.training.trackers.registry import Tracker, import_package, register_tracker


def _numbers(values: dict) -> dict[str, float]:
    return {key: float(value) for key, value in (values or {}).items() if isinstance(value, (int, float))}


class _WandbCallback(keras.callbacks.Callback):
    """Each epoch's logs at W&B step = the run's epoch index, so a resumed run continues the same curve."""

    def __init__(self, wandb_run):
        super().__init__()
        self.wandb_run = wandb_run

    def on_epoch_end(self, epoch, logs=None):
        if numbers := _numbers(logs):
            self.wandb_run.log(numbers, step=epoch)


class WandbTracker(Tracker):
    def __init__(self, wandb_run, artifact_name: str):
        self.wandb_run, self.artifact_name = wandb_run, artifact_name

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return [_WandbCallback(self.wandb_run)]

    def finish(self, metrics: dict, files: list[Path]) -> None:
        import wandb

        self.wandb_run.summary.update(_numbers(metrics))
        artifact = wandb.Artifact(self.artifact_name, type="kerasimg-run")
        for path in files:
            if path.is_dir():
                artifact.add_dir(str(path), name=path.name)
            elif path.exists():
                artifact.add_file(str(path))
        self.wandb_run.log_artifact(artifact)
        self.wandb_run.finish()


@register_tracker
def wandb(run, params: dict, resume: bool) -> Tracker:
    """W&B: the run is named after the run folder; ``--resume`` continues the same W&B run."""
    wandb_module = import_package("wandb")
    id_path = run.tracker_id_path("wandb")
    run_id = id_path.read_text().strip() if resume and id_path.exists() else None
    try:
        wandb_run = wandb_module.init(
            project=os.environ.get("WANDB_PROJECT", "kerasimg"),
            name=run.path.name,
            id=run_id,
            resume="allow" if run_id else None,
            dir=None if os.environ.get("WANDB_DIR") else str(run.path),
            config=params,
        )
    except wandb_module.errors.Error as error:
        raise UserError(
            f"W&B did not start a run ({str(error).strip()}); log in with `wandb login` or set "
            "WANDB_API_KEY, or set WANDB_MODE=offline to log into the run folder."
        ) from None
    if run_id is None:
        write_text(id_path, wandb_run.id + "\n")
    # W&B artifact names take letters, digits, '-', '_' and '.'.
    return WandbTracker(wandb_run, re.sub(r"[^\w.-]", "_", run.path.name))
