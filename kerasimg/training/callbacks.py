"""The driver's own Keras callbacks: epoch timing, live curves, a free-space check, the epoch reset,
and the one list a phase's ``fit`` is given (``phase_callbacks``)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.training import reports
from kerasimg.training.recipe import Recipe
from kerasimg.training.run import Run


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and validation) to each epoch's logs and history.csv."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the epoch's last learning rate (``lr``) to its logs, so history.csv shows the schedule."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["lr"] = float(keras.ops.convert_to_numpy(rate))


# Facts about an epoch, not metrics: history.csv and TensorBoard keep them, the console line does not.
EPOCH_FACTS = ("epoch_seconds", "lr")


class MetricsProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress line with the metrics only (``epoch_seconds: 40.8998 - lr: 0.0010`` read as
    two more metrics)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {k: v for k, v in (logs or {}).items() if k not in EPOCH_FACTS})


class CurvesCallback(keras.callbacks.Callback):
    """Redraw ``curves.png`` after every epoch, so an interrupted run still has its plot."""

    def __init__(
        self, history_path: Path, curves_path: Path, title: str, boundaries: list[int] | None = None
    ):
        super().__init__()
        self.history_path, self.curves_path = Path(history_path), Path(curves_path)
        self.title = title
        self.boundaries = boundaries or []

    def on_epoch_end(self, epoch, logs=None):
        rows = reports.read_history(self.history_path)
        reports.plot_curves(rows, self.curves_path, self.title, self.boundaries)


def check_free_space(folder: Path, needed: int) -> None:
    """Stop when ``folder``'s disk cannot take ``needed`` bytes: a full disk crashes TensorFlow."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(
            f"Only {free / 2**20:.1f} MB free on the disk of {folder}; an epoch's checkpoints need about "
            f"{needed / 2**20:.1f} MB. Free some space, then continue with --resume {folder}."
        )


def checkpoint_bytes(model: keras.Model) -> int:
    """What one epoch may write: the best model, the backup (weights and Adam's two moments), temp copies."""
    return int(model.count_params() * 4 * 6) + 8 * 2**20


class FreeSpaceGuard(keras.callbacks.Callback):
    """Checks the disk before every epoch's writes, so a full disk ends a run with one line."""

    def __init__(self, folder: Path, needed: int):
        super().__init__()
        self.folder, self.needed = Path(folder), needed

    def on_epoch_end(self, epoch, logs=None):
        check_free_space(self.folder, self.needed)


def forget_restored_epoch(model: keras.Model) -> None:
    """Let the next ``fit`` start at its own ``initial_epoch``.

    ``BackupAndRestore`` leaves the epoch it restored on the model (``_initial_epoch``,
    private in Keras 3.15, with no public way to clear it) and ``fit`` prefers that to
    its ``initial_epoch`` argument, so after one phase the next would start at the
    restored epoch instead of its boundary.
    """
    if getattr(model, "_initial_epoch", None) is not None:
        model._initial_epoch = None


def best_checkpoint(path: Path, *, weights_only: bool, best: float | None) -> keras.callbacks.ModelCheckpoint:
    """Keeps the epoch with the best validation accuracy, across phases: ``best`` is the one to beat."""
    return keras.callbacks.ModelCheckpoint(
        str(path),
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        save_weights_only=weights_only,
        initial_value_threshold=best,
    )


def phase_callbacks(
    run: Run,
    phase_index: int,
    checkpoint: keras.callbacks.ModelCheckpoint,
    *,
    recipe: Recipe,
    needed_bytes: int,
    title: str,
    boundaries: list[int],
    extra: Sequence[keras.callbacks.Callback] = (),
    correcting: Sequence[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """Every callback of phase ``phase_index``'s ``fit``, in the order they must run: ``correcting``
    (callbacks that change an epoch's logs) before any that reads them, ``extra`` last."""
    return [
        FreeSpaceGuard(run.path, needed_bytes),  # first: before the epoch's writes
        *correcting,
        keras.callbacks.BackupAndRestore(str(run.backup_dir(phase_index)), delete_checkpoint=False),
        # The EMA weights are the ones validated and checkpointed (the backup keeps the raw ones).
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if recipe.ema else []),
        checkpoint,
        *(
            [keras.callbacks.EarlyStopping("val_accuracy", patience=recipe.early_stop, mode="max")]
            if recipe.early_stop
            else []
        ),
        EpochTimer(),  # before the CSV logger, which writes the logs it adds
        LearningRateLogger(),
        keras.callbacks.CSVLogger(str(run.history_path), append=True),
        keras.callbacks.TensorBoard(str(run.tensorboard_dir), write_graph=False),
        CurvesCallback(run.history_path, run.curves_path, title, boundaries),
        *extra,
        MetricsProgbar(),  # Keras's own would be added here: last, after every log is in
    ]
