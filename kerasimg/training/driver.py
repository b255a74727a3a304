"""The fit driver: resolved arguments -> data -> model -> a phase loop -> a run directory.

The run directory (``kerasimg.training.run.Run`` knows its layout) gets everything
as soon as it exists, so Ctrl-C or a crash loses nothing already done, and
``resume`` continues from Keras's ``BackupAndRestore`` state.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

import kerasimg
from kerasimg import selection
from kerasimg.data import LabelledData, image_dataset, load_data
from kerasimg.data.augment import parse_augment
from kerasimg.diagnose.report import write_run_report
from kerasimg.errors import UserError
from kerasimg.files import atomic_write, make_temp_dir, write_text
from kerasimg.models import build_classifier, count_flops, get_backbone, load_classifier
from kerasimg.training import feature_cache, multihost, reports
from kerasimg.training.callbacks import (
    CurvesCallback,
    EpochTimer,
    FreeSpaceGuard,
    LearningRateLogger,
    check_free_space,
    checkpoint_bytes,
    forget_restored_epoch,
)
from kerasimg.training.config import FitConfig, ResolvedFit
from kerasimg.training.distribution import MULTIHOST, resolve_strategy
from kerasimg.training.evaluation import evaluate
from kerasimg.training.feature_cache import split_classifier
from kerasimg.training.precision import dtype_policy
from kerasimg.training.recipe import class_weights, compile_classifier, learning_rate
from kerasimg.training.run import CONFIG_FORMAT, Run
from kerasimg.training.schedules import ALL, HEAD, apply_phase

__all__ = ["FitConfig", "FitResult", "fit"]


@dataclass
class FitResult:
    run_dir: Path
    test_accuracy: float
    test_loss: float
    best_epoch: int
    seconds: float
    metrics: dict = field(default_factory=dict)
    exported: Path | None = None  # the zoo version folder, when the run was exported


def package_versions() -> dict[str, str]:
    import tensorflow as tf

    return {
        "kerasimg": kerasimg.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        **({"jax": __import__("jax").__version__} if keras.backend.backend() == "jax" else {}),
        "python": platform.python_version(),
    }


def fit(config: FitConfig, *, resume: bool = False, callbacks: list | None = None, log=print) -> FitResult:
    """Train a classifier as ``config`` says and write its run directory.

    Every argument is checked before any data is read. With ``resume=True``,
    ``config.out`` must be an earlier run's directory (see ``load_run_config``):
    training continues from its last completed epoch, or extends a finished run to
    a larger ``epochs``. ``callbacks`` are extra Keras callbacks, run after the
    driver's own. The run directory is locked for the whole run.
    """
    resolved = config.resolve()
    started = time.time()
    keras.utils.set_random_seed(config.seed)  # before the processes join, so they need no shared seed
    cluster = multihost.start() if config.strategy == MULTIHOST else None
    if cluster:
        multihost.check_same_seed(config.seed)
        scope, replicas = cluster.distribution.scope(), cluster.replicas
    else:
        strategy = resolve_strategy(config.strategy)
        scope, replicas = strategy.scope(), strategy.num_replicas_in_sync
    if config.out:  # process 0 of a multihost run checks; every process stops if it refuses
        multihost.shared_or_raise(lambda: _check_out(Run(config.out), resume, resolved))
    for note in resolved.notes:
        log(note)
    if resolved.precision != "float32" or replicas > 1 or cluster:
        processes = f" in {cluster.num_processes} process(es)" if cluster else ""
        log(
            f"Precision {resolved.precision}; {replicas} replica(s){processes}, global batch "
            f"{config.batch_size * replicas} ({config.batch_size} per replica)."
        )
    data = load_data(
        config.data,
        val_split=config.val_split,
        val_from=config.val_from,
        seed=config.seed,
        max_pixels=config.max_pixels,
        log=log,
    )
    for note in data.notes:
        log(note)
    with scope, dtype_policy(resolved.precision):
        # Built before the run directory exists, so a failed weights fetch leaves nothing behind.
        model = build_classifier(
            config.backbone,
            data.num_classes,
            image_size=resolved.image_size,
            weights=config.weights,
            dropout=config.dropout,
            head=config.head,
        )
        run = Run(resolved.run_dir(data.name))
        run_path = Path(multihost.from_process_zero(str(run.path)))
        if cluster and not cluster.writes:  # the same files, into a scratch folder deleted at the end
            run = Run(make_temp_dir(tempfile.gettempdir(), "kerasimg-process-"))
        try:
            with run.lock():
                if not resume and run.exists:  # another process started it while we read the data
                    raise UserError(
                        f"The run directory {run.path} already holds a run; choose another --out."
                    )
                trainer = _Trainer(resolved, run, data, model, replicas, callbacks, log, cluster)
                best_epoch, metrics = trainer.run(resume)
        finally:
            if run.path != run_path:
                shutil.rmtree(run.path, ignore_errors=True)
    return FitResult(
        run_path, metrics["test_accuracy"], metrics["test_loss"], best_epoch, time.time() - started, metrics
    )


def _check_out(run: Run, resume: bool, resolved: ResolvedFit) -> None:
    run.check_usable()
    if resume:
        _check_extension(run, resolved)
    elif run.exists:
        raise UserError(
            f"The run directory {run.path} already holds a run; pass --resume {run.path} "
            "to continue it or choose another --out."
        )
    elif run.holds_other_files:
        raise UserError(
            f"The run directory {run.path} holds files that are not a kerasimg run; "
            "choose an empty or new --out."
        )


def _check_extension(run: Run, resolved: ResolvedFit) -> None:
    """A resumed run keeps every phase it had; only the last one may grow."""
    saved = run.read_config()["resolved"].get("phases")
    if not saved:
        return
    new = [p.to_json() for p in resolved.phases]
    if len(new) != len(saved) or new[:-1] != saved[:-1] or new[-1]["start"] != saved[-1]["start"]:
        raise UserError(
            f"With --epochs {resolved.epochs} the schedule's phases would no longer match the run's "
            f"({saved}); only the last phase can be extended. Start a new run instead."
        )


class _Trainer:
    """One run's phase loop over a locked run directory."""

    def __init__(
        self,
        resolved: ResolvedFit,
        run: Run,
        data: LabelledData,
        model,
        replicas,
        callbacks,
        log,
        cluster=None,
    ):
        self.resolved, self.config, self.run_dir = resolved, resolved.arguments, run
        self.cluster = cluster  # a multihost run's processes, or None
        self.data, self.model, self.replicas = data, model, replicas
        self.spec = get_backbone(self.config.backbone)
        self.batch_size = self.config.batch_size * replicas  # --batch-size is per replica
        self.extra_callbacks = callbacks or []
        self.log = log
        self.title = f"{self.spec.name} on {data.name} ({resolved.schedule})"
        self.boundaries = [p.start for p in resolved.phases[1:]]
        self._check_split_size()
        self.class_weight = class_weights(resolved.recipe, data.class_names, self._train_counts())
        self._images = None  # the image pipelines, built when a phase first trains on images
        self._cached = None  # (head, train features, val features), built when a phase first needs them

    def run(self, resume: bool) -> tuple[int, dict]:
        run = self.run_dir
        self.started = time.time()
        run.path.mkdir(parents=True, exist_ok=True)
        check_free_space(run.path, checkpoint_bytes(self.model))
        phases = self.resolved.phases
        # What the run already did, as process 0 (which alone keeps the run) sees it.
        finished, best, done = multihost.from_process_zero(
            [
                resume and run.finished,
                _best_so_far(run) if resume else None,  # the best validation accuracy, across phases
                [
                    any(run.backup_dir(j).exists() for j in range(i + 1, len(phases)))
                    for i in range(len(phases))
                ],
            ]
        )
        if finished:
            self.log(f"Extending the finished run to {self.resolved.epochs} epochs; it is evaluated again.")
            run.clear_evaluation()
        self._write_config(resume)
        for index, phase in enumerate(phases):
            if done[index]:
                continue  # a resumed run is already past this phase
            best = self._train_phase(index, phase, best)
        # The last phase's state stays, so a larger --epochs can extend the finished run.
        run.clear_backups_except(len(phases) - 1)
        return self._finish()

    def _write_config(self, resume: bool) -> None:
        run, data, resolved = self.run_dir, self.data, self.resolved
        _write_skipped(run, data)
        if data.skipped:
            self.log(f"Skipped {len(data.skipped)} unreadable file(s); listed in {run.skipped_path}.")
        if selection.validated_on_test(data):
            self.log(selection.NOTE)
        created = datetime.datetime.now().isoformat(timespec="seconds")
        if resume and run.exists:  # (processes 1.. of a multihost run write a scratch copy)
            created = run.read_config().get("created", created)
        run.write_config(
            {
                "format": CONFIG_FORMAT,
                "arguments": dataclasses.asdict(self.config),
                "resolved": {
                    **resolved.to_json(),
                    "replicas": self.replicas,
                    "processes": self.cluster.num_processes if self.cluster else 1,
                    "global_batch_size": self.batch_size,
                    "backend": keras.backend.backend(),
                    "out": str(run.path),
                },
                "class_names": data.class_names,
                "data_summary": data.summary(),
                "backbone_spec": {
                    "preprocessing": self.spec.preprocessing,
                    "stages": self.spec.stage_names,
                    "default_image_size": self.spec.image_size,
                    "feature_dim": self.spec.feature_dim,
                },
                "parameters": {"total": int(self.model.count_params())},
                # A TensorFlow-graph count: not under the JAX backend (multihost).
                "flops_per_image": count_flops(self.model)
                if keras.backend.backend() == "tensorflow"
                else None,
                "versions": package_versions(),
                "created": created,
            }
        )
        self.log(f"Run directory: {run.path}")

    def _train_phase(self, index: int, phase, best: float | None) -> float | None:
        run, model, config = self.run_dir, self.model, self.config
        recipe = self.resolved.recipe
        trainable = apply_phase(model, self.spec, phase, self.resolved.train_bn)
        views = parse_augment(recipe.augment).cached_views
        # A multihost predict() would return one process's shard: frozen phases train on images there.
        use_cache = config.feature_cache and not self.cluster
        from_cache = use_cache and views is not None and not phase.trains_backbone
        if use_cache and views is None and not phase.trains_backbone:
            self.log(
                f"--augment {recipe.augment} changes more than flips, so this frozen-backbone phase "
                "trains on images rather than on cached features."
            )
        self.log(
            f"Phase {index + 1}/{len(self.resolved.phases)}: epochs {phase.start + 1}-{phase.end}, "
            f"{_describe(phase)}, lr {phase.lr:g}{', on cached features' if from_cache else ''}: "
            f"{trainable:,} of {model.count_params():,} parameters trainable."
        )
        if from_cache:
            trained, train_data, val_data = self._cached_features()
            checkpoint_path = run.head_weights_path
        else:
            trained, (train_data, val_data) = model, self._image_pipelines()
            checkpoint_path = run.model_path
        steps = self._steps_per_epoch()
        compile_classifier(trained, learning_rate(recipe, phase.lr, steps, phase.end - phase.start), recipe)
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(checkpoint_path),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=from_cache,
            initial_value_threshold=best,
        )
        multihost.copy_from_process_zero(run.backup_dir(index))  # every process restores the same state
        trained.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=phase.start,
            epochs=phase.end,
            callbacks=[
                FreeSpaceGuard(run.path, checkpoint_bytes(model)),  # first: before the epoch's writes
                keras.callbacks.BackupAndRestore(str(run.backup_dir(index)), delete_checkpoint=False),
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
                CurvesCallback(run.history_path, run.curves_path, self.title, self.boundaries),
                *self.extra_callbacks,
            ],
            shuffle=False,  # the pipelines shuffle, seeded
            class_weight=self.class_weight,
            verbose=progress_verbosity(),
        )
        forget_restored_epoch(trained)
        improved = checkpoint.best is not None and (best is None or checkpoint.best > best)
        if from_cache and improved and checkpoint_path.exists():
            _save_classifier_with_best_head(model, trained, checkpoint_path, run.model_path)
        return checkpoint.best if improved else best

    def _image_pipelines(self):
        if self._images is None:
            config, size = self.config, self.resolved.image_size
            self._images = (
                image_dataset(
                    self.data.train,
                    size,
                    self.batch_size,
                    training=True,
                    augment=self.resolved.recipe.augment,
                    seed=config.seed,
                    num_classes=self._label_depth(),
                ),
                image_dataset(
                    self.data.val, size, self.batch_size, training=False, num_classes=self._label_depth()
                ),
            )
            if self.cluster:
                self._images = tuple(multihost.process_share(ds, self.batch_size) for ds in self._images)
                self.log(
                    f"Each process trains on {self.batch_size // self.cluster.num_processes} images of every "
                    f"global batch of {self.batch_size}; a last, partial batch is left out of every epoch."
                )
        return self._images

    def _cached_features(self):
        """The shared head and its train/val feature datasets (computed once, kept in the run)."""
        if self._cached is None:
            config, size, batch = self.config, self.resolved.image_size, self.batch_size
            extractor, head = split_classifier(self.model)
            identity = {
                "backbone": config.backbone,
                "weights": config.weights,
                "data": config.data,
                "precision": self.resolved.precision,
            }
            cache_dir = self.run_dir.features_dir
            views = parse_augment(self.resolved.recipe.augment).cached_views
            train_f, train_y = feature_cache.extract(
                extractor, self.data.train, size, batch, views, cache_dir, "train", identity, self.log
            )
            val_f, val_y = feature_cache.extract(
                extractor, self.data.val, size, batch, ("plain",), cache_dir, "val", identity, self.log
            )
            depth = self._label_depth()
            self._cached = (
                head,
                feature_cache.feature_dataset(
                    train_f, train_y, batch, training=True, seed=config.seed, num_classes=depth
                ),
                feature_cache.feature_dataset(val_f, val_y, batch, training=False, num_classes=depth),
            )
        return self._cached

    def _label_depth(self) -> int | None:
        """One-hot labels of this depth when the recipe needs them, else integer labels."""
        return self.data.num_classes if self.resolved.recipe.one_hot else None

    def _check_split_size(self) -> None:
        """Schedules by step and ``auto`` class weights need the training split's size and counts."""
        recipe = self.resolved.recipe
        if hasattr(self.data.train, "class_counts"):
            return
        needs = [
            flag
            for flag, used in (
                ("--lr-schedule cosine", recipe.lr_schedule == "cosine"),
                ("--warmup-epochs", recipe.warmup_epochs > 0),
                ("--class-weight auto", recipe.class_weight == "auto"),
            )
            if used
        ]
        if needs:
            raise UserError(
                f"{', '.join(needs)} need the training split's size and class counts, which "
                f"{self.config.data} does not give without reading it all; use --lr-schedule constant "
                "--warmup-epochs 0 --class-weight none (or a folder of images)."
            )

    def _train_counts(self) -> list[int]:
        split = self.data.train
        if hasattr(split, "class_counts"):
            return split.class_counts(self.data.num_classes)
        return [1] * self.data.num_classes  # a TFDS split (_check_split_size refuses auto weights)

    def _steps_per_epoch(self) -> int:
        return (
            max(1, -(-len(self.data.train) // self.batch_size))
            if hasattr(self.data.train, "class_counts")
            else 1
        )

    def _finish(self) -> tuple[int, dict]:
        run = self.run_dir
        rows = reports.read_history(run.history_path)
        reports.write_history(run.history_path, rows)
        reports.plot_curves(rows, run.curves_path, self.title, self.boundaries)
        best_epoch = int(max(rows, key=lambda r: r.get("val_accuracy", -1))["epoch"]) + 1 if rows else 0
        if self.cluster:  # each process evaluates by itself, on the whole test split (see multihost)
            # A resumed run's best model may predate this process: every process takes process 0's.
            multihost.copy_from_process_zero(run.path, run.model_path.name)
            with multihost.local():
                return self._evaluate(run, rows, best_epoch)
        return self._evaluate(run, rows, best_epoch)

    def _evaluate(self, run: Run, rows: list[dict], best_epoch: int) -> tuple[int, dict]:
        final = load_classifier(run.model_path) if run.has_model or self.cluster else self.model
        metrics = evaluate(
            final,
            self.data,
            self.resolved.image_size,
            self.batch_size,
            run,
            self.title,
            # Grad-CAM on the mistakes uses a TensorFlow gradient tape: not under JAX (multihost).
            backbone=self.spec.name if keras.backend.backend() == "tensorflow" else None,
            tta=self.resolved.recipe.tta,
        )
        metrics["best_epoch"] = best_epoch
        metrics["train_seconds"] = round(time.time() - self.started, 1)
        # Model selection saw the test split: the test accuracy is optimistic.
        metrics[selection.METRICS_KEY] = selection.validated_on_test(self.data)
        run.write_metrics(metrics)
        write_run_report(run.path)
        return best_epoch, metrics


def progress_verbosity() -> int:
    """Keras's progress bar on a terminal; one line per epoch in a log file, CI or a notebook capture."""
    return 1 if sys.stdout.isatty() else 2


def _best_so_far(run: Run) -> float | None:
    """The best validation accuracy an interrupted or extended run reached, so no worse epoch replaces it."""
    if not run.history_path.exists():
        return None
    scores = [r["val_accuracy"] for r in reports.read_history(run.history_path) if "val_accuracy" in r]
    return max(scores, default=None)


def _describe(phase) -> str:
    if phase.unfrozen == HEAD:
        return "backbone frozen"
    if phase.unfrozen == ALL:
        return "backbone unfrozen"
    return f"backbone unfrozen from {phase.unfrozen} up"


def _save_classifier_with_best_head(model, head, head_weights: Path, target: Path) -> None:
    """Write the classifier with the best epoch's head to ``target``, then restore the latest head."""
    latest = [w.numpy() for w in head.weights]
    head.load_weights(head_weights)
    atomic_write(target, lambda tmp: model.save(tmp))
    for variable, value in zip(head.weights, latest):
        variable.assign(value)


def _write_skipped(run: Run, data: LabelledData) -> None:
    lines = [f"{path}\t{reason}" for path, reason in sorted(data.skipped.items())]
    write_text(run.skipped_path, "\n".join(lines) + ("\n" if lines else ""))
