"""The fit driver: data -> model -> training -> a run directory that explains itself.

A run directory holds ``config.json`` (every resolved argument, class names, seed,
package versions), ``history.csv``, ``curves.png``, ``confusion.png``,
``metrics.json``, ``model.keras`` (the best epoch by validation accuracy),
TensorBoard logs under ``tensorboard/`` and ``skipped_files.txt``. Everything is
written as soon as it exists, so Ctrl-C or a crash loses nothing already done,
and ``resume`` continues from Keras's ``BackupAndRestore`` state.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

import kerasimg
from kerasimg.data import LabelledData, image_dataset, load_data
from kerasimg.errors import UserError
from kerasimg.files import write_json, write_text
from kerasimg.models import backbone_of, build_classifier, get_backbone
from kerasimg.training import reports

SCHEDULES = ("linear-probe", "full")


@dataclass
class FitConfig:
    """Every argument of a run; saved as ``config.json`` and read back by ``--resume``."""

    backbone: str = "resnet50"
    data: str = "scenes"
    weights: str = "imagenet"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int | None = None
    schedule: str = "linear-probe"
    augment: str = "flip"
    dropout: float = 0.2
    val_split: float = 0.1
    val_from: str = "train"
    seed: int = 0
    out: str | None = None

    def validate(self) -> None:
        """Check user input before anything is built or loaded."""
        get_backbone(self.backbone)
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {SCHEDULES}. Received: schedule={self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(
                    f"--{name.replace('_', '-')} must be at least 1. Received: {name}={getattr(self, name)}"
                )
        if not self.lr > 0:
            raise UserError(f"--lr must be positive. Received: lr={self.lr}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1). Received: dropout={self.dropout}")


@dataclass
class FitResult:
    run_dir: Path
    test_accuracy: float
    test_loss: float
    best_epoch: int
    seconds: float
    metrics: dict = field(default_factory=dict)


def default_run_dir(config: FitConfig, data_name: str, root: str | Path = "runs") -> Path:
    """``runs/<date>-<backbone>-<data>/``, with ``-2``, ``-3``... when taken."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{config.backbone}-{data_name}"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = Path(f"{base}-{n}"), n + 1
    return candidate


def package_versions() -> dict[str, str]:
    import tensorflow as tf

    versions = {
        "kerasimg": kerasimg.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    return versions


def fit(config: FitConfig, *, resume: bool = False, callbacks: list | None = None, log=print) -> FitResult:
    """Train a classifier as ``config`` says and write its run directory.

    With ``resume=True``, ``config.out`` must be an interrupted run's directory;
    training continues from its last completed epoch. ``callbacks`` are extra Keras
    callbacks, run after the driver's own.
    """
    config.validate()
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    spec = get_backbone(config.backbone)
    data = load_data(config.data, val_split=config.val_split, val_from=config.val_from, seed=config.seed)
    for note in data.notes:
        log(note)
    if config.weights == "none" and config.schedule == "linear-probe":
        log("--weights none: a linear probe would train a head on random features; using --schedule full.")
        config.schedule = "full"
    image_size = int(config.image_size or spec.image_size)

    # Built before the run directory exists, so a failed weights fetch leaves nothing behind.
    model = build_classifier(
        spec, data.num_classes, image_size=image_size, weights=config.weights, dropout=config.dropout
    )
    run_dir = Path(config.out) if config.out else default_run_dir(config, data.name)
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"The run directory {run_dir} already holds a run; pass --resume {run_dir} "
            "to continue it or choose another --out."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    config.out = str(run_dir)
    _write_skipped(run_dir, data)

    backbone_of(model).trainable = config.schedule == "full"
    model.compile(
        optimizer=keras.optimizers.Adam(config.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    resolved = {
        **dataclasses.asdict(config),
        "image_size": image_size,
        "class_names": data.class_names,
        "data_summary": data.summary(),
        "backbone_spec": {
            "preprocessing": spec.preprocessing,
            "stages": spec.stage_names,
            "default_image_size": spec.image_size,
            "feature_dim": spec.feature_dim,
        },
        "parameters": {"total": int(model.count_params()), "trainable": trainable},
        "versions": package_versions(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(run_dir / "config.json", resolved)
    log(f"Run directory: {run_dir}")
    log(
        f"{spec.name} at {image_size}px, schedule {config.schedule}: "
        f"{trainable:,} of {model.count_params():,} parameters trainable."
    )

    train_ds = image_dataset(
        data.train, image_size, config.batch_size, training=True, augment=config.augment, seed=config.seed
    )
    val_ds = image_dataset(data.val, image_size, config.batch_size, training=False)
    title = f"{spec.name} on {data.name} ({config.schedule})"
    run_callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "model.keras"), monitor="val_accuracy", mode="max", save_best_only=True
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        CurvesCallback(run_dir, title),
        *(callbacks or []),
    ]
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=run_callbacks,
        shuffle=False,
        verbose=1,
    )  # the pipeline shuffles, seeded

    rows = reports.read_history(run_dir / "history.csv")
    reports.write_history(run_dir / "history.csv", rows)
    reports.plot_curves(rows, run_dir / "curves.png", title)
    best_epoch = int(max(rows, key=lambda r: r.get("val_accuracy", -1))["epoch"]) + 1 if rows else 0
    best = keras.saving.load_model(run_dir / "model.keras") if (run_dir / "model.keras").exists() else model
    metrics = evaluate(best, data, image_size, config.batch_size, run_dir, title)
    seconds = time.time() - started
    metrics.update({"best_epoch": best_epoch, "train_seconds": round(seconds, 1)})
    write_json(run_dir / "metrics.json", metrics)
    return FitResult(run_dir, metrics["test_accuracy"], metrics["test_loss"], best_epoch, seconds, metrics)


def evaluate(
    model: keras.Model, data: LabelledData, image_size: int, batch_size: int, run_dir: Path, title: str
) -> dict:
    """Test loss and accuracy, per-class precision/recall/F1, and ``confusion.png``."""
    test_ds = image_dataset(data.test, image_size, batch_size, training=False)
    labels, probabilities = [], []
    for images, batch_labels in test_ds:
        probabilities.append(model.predict_on_batch(images))
        labels.append(batch_labels.numpy())
    probabilities = np.concatenate(probabilities)
    labels = np.concatenate(labels)
    predictions = probabilities.argmax(axis=1)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1))))
    matrix = reports.confusion_matrix(labels, predictions, data.num_classes)
    reports.plot_confusion(matrix, data.class_names, run_dir / "confusion.png", f"{title}: test")
    return {
        "test_loss": loss,
        "test_accuracy": float(np.mean(predictions == labels)),
        "test_examples": int(len(labels)),
        "per_class": reports.per_class_metrics(matrix, data.class_names),
        "confusion_matrix": matrix.tolist(),
        "class_names": data.class_names,
    }


def _write_skipped(run_dir: Path, data: LabelledData) -> None:
    lines = [f"{path}\t{reason}" for path, reason in sorted(data.skipped.items())]
    write_text(run_dir / "skipped_files.txt", "\n".join(lines) + ("\n" if lines else ""))


class CurvesCallback(keras.callbacks.Callback):
    """Redraw ``curves.png`` after every epoch, so an interrupted run still has its plot."""

    def __init__(self, run_dir: Path, title: str):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.title = title

    def on_epoch_end(self, epoch, logs=None):
        rows = reports.read_history(self.run_dir / "history.csv")
        reports.plot_curves(rows, self.run_dir / "curves.png", self.title)


def load_run_config(run_dir: str | Path) -> FitConfig:
    """The ``FitConfig`` an earlier run was started with, for ``--resume``."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise UserError(f"No config.json in {run_dir}: --resume takes the directory of an earlier run.")
    if (Path(run_dir) / "metrics.json").exists():
        raise UserError(f"The run in {run_dir} already finished (metrics.json exists); nothing to resume.")
    saved = json.loads(path.read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(FitConfig)}
    config = FitConfig(**{k: v for k, v in saved.items() if k in names})
    config.out = str(run_dir)
    return config
