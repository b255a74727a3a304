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
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

import kerasimg
from kerasimg import selection
from kerasimg.data import LabelledData, image_dataset, load_data
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.errors import UserError
from kerasimg.files import atomic_write, write_text
from kerasimg.models import build_classifier, count_flops, get_backbone, load_classifier
from kerasimg.models.classifier import MIN_IMAGE_SIZE
from kerasimg.training import feature_cache, reports
from kerasimg.training.distribution import STRATEGIES, resolve_strategy
from kerasimg.training.feature_cache import CACHED_AUGMENTATIONS, split_classifier
from kerasimg.training.precision import dtype_policy, resolve_precision
from kerasimg.training.run import Run
from kerasimg.training.schedules import ALL, HEAD, apply_phase, parse_schedule


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
    unfreeze_every: int = 2
    finetune_lr: float | None = None
    train_bn: bool = False
    feature_cache: bool = True
    augment: str = "flip"
    dropout: float = 0.2
    head: str = "linear"
    val_split: float = 0.1
    val_from: str = "train"
    seed: int = 0
    precision: str = "float32"
    strategy: str = "none"
    max_pixels: int = DEFAULT_MAX_PIXELS
    out: str | None = None

    def validate(self) -> None:
        """Check user input before anything is built or loaded."""
        get_backbone(self.backbone)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(
                    f"--{name.replace('_', '-')} must be at least 1. Received: {name}={getattr(self, name)}"
                )
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise UserError(
                f"--image-size must be at least {MIN_IMAGE_SIZE} pixels (or left out for the backbone's own "
                f"size). Received: image_size={self.image_size}"
            )
        if self.max_pixels < 1:
            raise UserError(f"--max-pixels must be at least 1. Received: max_pixels={self.max_pixels}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive. Received: lr={self.lr}")
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise UserError(f"--finetune-lr must be positive. Received: finetune_lr={self.finetune_lr}")
        resolve_precision(self.precision, self.backbone)
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {STRATEGIES}. Received: strategy={self.strategy!r}")
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

    With ``resume=True``, ``config.out`` must be an earlier run's directory (see
    ``load_run_config``); training continues from its last completed epoch, or
    extends a finished run to a larger ``epochs``. ``callbacks`` are extra Keras
    callbacks, run after the driver's own. The run directory is locked for the whole
    run: a second process on it is refused.
    """
    config.validate()
    if config.out:
        run = Run(config.out)
        run.check_usable()
        if not resume and run.exists:
            raise UserError(
                f"The run directory {run.path} already holds a run; pass --resume {run.path} "
                "to continue it or choose another --out."
            )
        if not resume and run.holds_other_files:
            raise UserError(
                f"The run directory {run.path} holds files that are not a kerasimg run; "
                "choose an empty or new --out."
            )
    policy = resolve_precision(config.precision, config.backbone)
    strategy = resolve_strategy(config.strategy)
    if policy != "float32" or strategy.num_replicas_in_sync > 1:
        log(
            f"Precision {policy}; {strategy.num_replicas_in_sync} replica(s), global batch "
            f"{config.batch_size * strategy.num_replicas_in_sync} ({config.batch_size} per replica)."
        )
    with strategy.scope(), dtype_policy(policy):
        return _fit(config, policy, strategy.num_replicas_in_sync, resume, callbacks, log)


def _fit(config: FitConfig, policy: str, replicas: int, resume: bool, callbacks, log) -> FitResult:
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    batch_size = config.batch_size * replicas  # --batch-size is per replica
    spec = get_backbone(config.backbone)
    pretrained = config.weights != "none"
    if not pretrained and config.schedule == "linear-probe":
        log("--weights none: a linear probe would train a head on random features; using --schedule full.")
        config.schedule = "full"
    # With random weights there are no pretrained features or BatchNorm statistics to protect.
    finetune_lr = config.finetune_lr or (config.lr / 10 if pretrained else config.lr)
    train_bn = config.train_bn or not pretrained
    phases = parse_schedule(
        config.schedule,
        spec.stage_names,
        config.epochs,
        lr=config.lr,
        finetune_lr=finetune_lr,
        unfreeze_every=config.unfreeze_every,
    )
    config.epochs = phases[-1].end
    if resume:
        _check_extension(Run(config.out), phases)
    data = load_data(
        config.data,
        val_split=config.val_split,
        val_from=config.val_from,
        seed=config.seed,
        max_pixels=config.max_pixels,
    )
    for note in data.notes:
        log(note)
    image_size = int(spec.image_size if config.image_size is None else config.image_size)

    # Built before the run directory exists, so a failed weights fetch leaves nothing behind.
    model = build_classifier(
        spec,
        data.num_classes,
        image_size=image_size,
        weights=config.weights,
        dropout=config.dropout,
        head=config.head,
    )
    run = Run(config.out) if config.out else Run(default_run_dir(config, data.name))
    with run.lock():
        if not resume and run.exists:  # another process started it while we read the data
            raise UserError(f"The run directory {run.path} already holds a run; choose another --out.")
        config.out = str(run.path)
        settings = _Settings(spec, data, model, phases, image_size, batch_size, policy, replicas, train_bn)
        best_epoch, metrics = _train(config, run, settings, finetune_lr, resume, callbacks, log)
    seconds = time.time() - started
    return FitResult(run.path, metrics["test_accuracy"], metrics["test_loss"], best_epoch, seconds, metrics)


@dataclass
class _Settings:
    """What ``_fit`` resolved before the run directory was taken."""

    spec: object
    data: LabelledData
    model: keras.Model
    phases: list
    image_size: int
    batch_size: int
    policy: str
    replicas: int
    train_bn: bool


def _train(config: FitConfig, run: Run, s: _Settings, finetune_lr, resume, callbacks, log):
    started = time.time()
    spec, data, model, phases = s.spec, s.data, s.model, s.phases
    run.path.mkdir(parents=True, exist_ok=True)
    check_free_space(run.path, model)
    if resume and run.finished:
        log(f"Extending the finished run to {config.epochs} epochs; it is evaluated again at the end.")
        run.clear_evaluation()
    _write_skipped(run, data)
    if data.skipped:
        log(f"Skipped {len(data.skipped)} unreadable file(s); listed in {run.skipped_path}.")
    if selection.validated_on_test(data):
        log(selection.NOTE)
    resolved = {
        **dataclasses.asdict(config),
        "image_size": s.image_size,
        "resolved_finetune_lr": finetune_lr,
        "resolved_train_bn": s.train_bn,
        "resolved_precision": s.policy,
        "replicas": s.replicas,
        "phases": [p.to_json() for p in phases],
        "class_names": data.class_names,
        "data_summary": data.summary(),
        "backbone_spec": {
            "preprocessing": spec.preprocessing,
            "stages": spec.stage_names,
            "default_image_size": spec.image_size,
            "feature_dim": spec.feature_dim,
        },
        "parameters": {"total": int(model.count_params())},
        "flops_per_image": count_flops(model),
        "versions": package_versions(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if resume:
        resolved["created"] = run.read_config().get("created", resolved["created"])
    run.write_config(resolved)
    log(f"Run directory: {run.path}")

    use_cache = config.feature_cache and config.augment in CACHED_AUGMENTATIONS
    title = f"{spec.name} on {data.name} ({config.schedule})"
    boundaries = [p.start for p in phases[1:]]
    images = None  # the image pipelines, built when a phase first trains on images
    cached = None  # (head, train features, val features), built when a phase first needs them
    best = _best_so_far(run) if resume else None  # best validation accuracy, carried across phases
    for index, phase in enumerate(phases):
        if any(run.backup_dir(j).exists() for j in range(index + 1, len(phases))):
            continue  # a resumed run is already past this phase
        trainable = apply_phase(model, spec, phase, s.train_bn)
        from_cache = use_cache and not phase.trains_backbone
        log(
            f"Phase {index + 1}/{len(phases)}: epochs {phase.start + 1}-{phase.end}, "
            f"{_describe(phase)}, lr {phase.lr:g}{', on cached features' if from_cache else ''}: "
            f"{trainable:,} of {model.count_params():,} parameters trainable."
        )
        if from_cache:
            if cached is None:
                cached = _cached_features(model, data, config, s.image_size, s.batch_size, s.policy, run)
            trained, train_data, val_data = cached
            checkpoint_path = run.head_weights_path
        else:
            if images is None:
                images = (
                    image_dataset(
                        data.train,
                        s.image_size,
                        s.batch_size,
                        training=True,
                        augment=config.augment,
                        seed=config.seed,
                    ),
                    image_dataset(data.val, s.image_size, s.batch_size, training=False),
                )
            trained, (train_data, val_data) = model, images
            checkpoint_path = run.model_path
        trained.compile(
            optimizer=keras.optimizers.Adam(phase.lr),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(checkpoint_path),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=from_cache,
            initial_value_threshold=best,
        )
        trained.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=phase.start,
            epochs=phase.end,
            callbacks=[
                FreeSpaceGuard(run.path, model),  # first: refuse an epoch's writes on a full disk
                keras.callbacks.BackupAndRestore(str(run.backup_dir(index)), delete_checkpoint=False),
                checkpoint,
                EpochTimer(),  # before the CSV logger, which writes the logs it adds
                keras.callbacks.CSVLogger(str(run.history_path), append=True),
                keras.callbacks.TensorBoard(str(run.tensorboard_dir), write_graph=False),
                CurvesCallback(run, title, boundaries),
                *(callbacks or []),
            ],
            shuffle=False,  # the pipelines shuffle, seeded
            verbose=1,
        )
        # BackupAndRestore leaves the restored epoch on the model, and fit() prefers it to its
        # initial_epoch argument; clear it so the next phase starts at its own boundary.
        if getattr(trained, "_initial_epoch", None) is not None:
            trained._initial_epoch = None
        improved = checkpoint.best is not None and (best is None or checkpoint.best > best)
        if from_cache and improved and checkpoint_path.exists():
            _save_classifier_with_best_head(model, trained, checkpoint_path, run.model_path)
        best = checkpoint.best if improved else best
    # The last phase's state stays, so a larger --epochs can extend the finished run.
    run.clear_backups_except(len(phases) - 1)

    rows = reports.read_history(run.history_path)
    reports.write_history(run.history_path, rows)
    reports.plot_curves(rows, run.curves_path, title, boundaries)
    best_epoch = int(max(rows, key=lambda r: r.get("val_accuracy", -1))["epoch"]) + 1 if rows else 0
    final = load_classifier(run.model_path) if run.has_model else model
    metrics = evaluate(final, data, s.image_size, s.batch_size, run, title)
    metrics.update(
        {
            "best_epoch": best_epoch,
            "train_seconds": round(time.time() - started, 1),
            # Model selection saw the test split: the test accuracy is optimistic.
            selection.METRICS_KEY: selection.validated_on_test(data),
        }
    )
    run.write_metrics(metrics)
    return best_epoch, metrics


def _best_so_far(run: Run) -> float | None:
    """The best validation accuracy an interrupted or extended run reached, so no worse epoch replaces it."""
    if not run.history_path.exists():
        return None
    scores = [r["val_accuracy"] for r in reports.read_history(run.history_path) if "val_accuracy" in r]
    return max(scores, default=None)


def _check_extension(run: Run, phases) -> None:
    """An extended run keeps every phase it had; only the last one may grow."""
    saved = run.read_config().get("phases")
    if not saved:
        return
    new = [p.to_json() for p in phases]
    if len(new) != len(saved) or new[:-1] != saved[:-1] or new[-1]["start"] != saved[-1]["start"]:
        raise UserError(
            f"With --epochs {phases[-1].end} the schedule's phases would no longer match the run's "
            f"({saved}); only the last phase can be extended. Start a new run instead."
        )


def check_free_space(folder: Path, model: keras.Model) -> None:
    """Refuse to start an epoch that cannot write its checkpoints (a full disk crashes TensorFlow)."""
    needed = _checkpoint_bytes(model)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(
            f"Only {free / 2**20:.1f} MB free on the disk of {folder}; an epoch's checkpoints need about "
            f"{needed / 2**20:.1f} MB. Free some space, then continue with --resume {folder}."
        )


def _checkpoint_bytes(model: keras.Model) -> int:
    # The best model, the backup (weights and Adam's two moments) and their temporary copies.
    return int(model.count_params() * 4 * 6) + 8 * 2**20


class FreeSpaceGuard(keras.callbacks.Callback):
    """Checks the disk before every epoch's writes, so a full disk ends a run with one line."""

    def __init__(self, folder: Path, model: keras.Model):
        super().__init__()
        self.folder = folder
        self.needed_model = model

    def on_epoch_end(self, epoch, logs=None):
        check_free_space(self.folder, self.needed_model)


def _describe(phase) -> str:
    if phase.unfrozen == HEAD:
        return "backbone frozen"
    if phase.unfrozen == ALL:
        return "backbone unfrozen"
    return f"backbone unfrozen from {phase.unfrozen} up"


def _cached_features(model, data, config: FitConfig, image_size: int, batch_size: int, policy: str, run: Run):
    """The shared head and its train/val feature datasets (computed once, kept in the run)."""
    extractor, head = split_classifier(model)
    identity = {
        "backbone": config.backbone,
        "weights": config.weights,
        "data": config.data,
        "precision": policy,
    }
    views = CACHED_AUGMENTATIONS[config.augment]
    cache_dir = run.features_dir
    train_f, train_y = feature_cache.extract(
        extractor, data.train, image_size, batch_size, views, cache_dir, "train", identity
    )
    val_f, val_y = feature_cache.extract(
        extractor, data.val, image_size, batch_size, ("plain",), cache_dir, "val", identity
    )
    return (
        head,
        feature_cache.feature_dataset(train_f, train_y, batch_size, training=True, seed=config.seed),
        feature_cache.feature_dataset(val_f, val_y, batch_size, training=False),
    )


def _save_classifier_with_best_head(model, head, head_weights: Path, target: Path) -> None:
    """Write the classifier with the best epoch's head to ``target``, then restore the latest head."""
    latest = [w.numpy() for w in head.weights]
    head.load_weights(head_weights)
    atomic_write(target, lambda tmp: model.save(tmp))
    for variable, value in zip(head.weights, latest):
        variable.assign(value)


def evaluate(
    model: keras.Model, data: LabelledData, image_size: int, batch_size: int, run: Run, title: str
) -> dict:
    """Test loss and accuracy, per-class precision/recall/F1, and ``confusion.png``."""
    test_ds = image_dataset(data.test, image_size, batch_size, training=False)
    # predict() rather than predict_on_batch(): under MirroredStrategy the latter returns every
    # replica's copy of the batch. The test pipeline is cached and ordered, so labels line up.
    probabilities = model.predict(test_ds.map(lambda images, _: images), verbose=0)
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in test_ds])
    predictions = probabilities.argmax(axis=1)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1))))
    matrix = reports.confusion_matrix(labels, predictions, data.num_classes)
    reports.plot_confusion(matrix, data.class_names, run.confusion_path, f"{title}: test")
    return {
        "test_loss": loss,
        "test_accuracy": float(np.mean(predictions == labels)),
        "test_examples": int(len(labels)),
        "per_class": reports.per_class_metrics(matrix, data.class_names),
        "confusion_matrix": matrix.tolist(),
        "class_names": data.class_names,
    }


def _write_skipped(run: Run, data: LabelledData) -> None:
    lines = [f"{path}\t{reason}" for path, reason in sorted(data.skipped.items())]
    write_text(run.skipped_path, "\n".join(lines) + ("\n" if lines else ""))


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and validation) to each epoch's logs and history.csv."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


class CurvesCallback(keras.callbacks.Callback):
    """Redraw ``curves.png`` after every epoch, so an interrupted run still has its plot."""

    def __init__(self, run: Run, title: str, boundaries: list[int] | None = None):
        super().__init__()
        self.run = run
        self.title = title
        self.boundaries = boundaries or []

    def on_epoch_end(self, epoch, logs=None):
        rows = reports.read_history(self.run.history_path)
        reports.plot_curves(rows, self.run.curves_path, self.title, self.boundaries)


def load_run_config(run_dir: str | Path, **overrides) -> FitConfig:
    """The ``FitConfig`` an earlier run was started with, for ``--resume``.

    ``overrides`` are the arguments the caller gave beside the run: any that differs
    from the saved run is refused by name, except a larger ``epochs``, which extends
    an interrupted or finished run. A finished run needs one to be resumed.
    """
    run = Run(run_dir)
    if not run.exists:
        raise UserError(f"No config.json in {run_dir}: --resume takes the directory of an earlier run.")
    saved = run.read_config()
    names = {f.name for f in dataclasses.fields(FitConfig)}
    config = FitConfig(**{k: v for k, v in saved.items() if k in names})
    config.out = str(run_dir)
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"Unknown settings for a resumed run: {', '.join(unknown)}.")
    epochs = overrides.pop("epochs", None)
    conflicts = [
        f"--{key.replace('_', '-')} {value} (the run has {getattr(config, key)})"
        for key, value in sorted(overrides.items())
        if key != "out" and value != getattr(config, key)
    ]
    if epochs is not None and epochs < config.epochs:
        conflicts.append(f"--epochs {epochs} (the run has {config.epochs}; it can only grow)")
    if conflicts:
        raise UserError(
            f"--resume continues {run_dir} with its saved settings; these differ: {'; '.join(conflicts)}. "
            "Drop them, or start a new run with another --out."
        )
    extends = epochs is not None and epochs > config.epochs
    if run.finished and not extends:
        raise UserError(
            f"The run in {run_dir} already finished (metrics.json exists); nothing to resume. "
            f"Pass a larger --epochs (it has {config.epochs}) to train it further."
        )
    if extends:
        config.epochs = epochs
    return config
