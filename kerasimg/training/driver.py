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
from kerasimg.data.augment import FLIP_VIEWS, PLAIN_VIEW
from kerasimg.data.duplicates import leakage_warning
from kerasimg.data.exclude import read_exclusions
from kerasimg.errors import UserError
from kerasimg.files import atomic_write, make_temp_dir, write_text
from kerasimg.models import build_classifier, count_flops, get_backbone, load_classifier
from kerasimg.models.batchnorm_folding import batchnorm_compute_model
from kerasimg.training import after_fit, feature_cache, multihost, reports
from kerasimg.training.boundary_cache import BoundarySplit, CutRefused, boundary_stage, split_at_stage
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
from kerasimg.training.feature_cache import split_classifier
from kerasimg.training.layer_decay import lr_multipliers, stage_rates
from kerasimg.training.precision import dtype_policy
from kerasimg.training.recipe import class_weights, compile_classifier, learning_rate
from kerasimg.training.run import CONFIG_FORMAT, Run
from kerasimg.training.schedules import ALL, HEAD, apply_phase

__all__ = ["FitConfig", "FitResult", "fit"]

# What a phase trains on (``_Trainer._source``).
IMAGES, FEATURES, BOUNDARY = "images", "features", "boundary"


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
    cluster = multihost.processes(config.strategy, config.connect_timeout, log)
    cluster.check_same_seed(config.seed)
    scope, replicas = cluster.scope(), cluster.replicas
    if config.out:  # process 0 of a multihost run checks; every process stops if it refuses
        multihost.shared_or_raise(lambda: _check_out(Run(config.out), resume, resolved))
    if resolved.precision != "float32" or replicas > 1 or cluster.processes_note:
        log(
            f"Precision {resolved.precision}; {replicas} replica(s){cluster.processes_note}, global batch "
            f"{config.batch_size * replicas} ({config.batch_size} per replica)."
        )
    data = load_data(
        config.data,
        val_split=config.val_split,
        val_from=config.val_from,
        seed=config.seed,
        max_pixels=config.max_pixels,
        verify=config.verify,
        exclude=read_exclusions(config.exclude, config.exclude_issues) if config.exclude else None,
        log=log,
    )
    # Said once, when the run starts and its data has been read (a bad --data is the only line).
    for note in () if resume else resolved.notes:
        log(note)
    for note in data.notes:
        log(note)
    if leak := leakage_warning(data.train, data.test):
        log(leak)
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
        if not cluster.writes:  # the same files, into a scratch folder deleted at the end
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
    # Compare what a phase is (its Phase fields), not what config.json derives from it (stage_lr).
    saved = [{key: phase.get(key) for key in new[0]} for phase in saved]
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
        cluster: multihost.Cluster | multihost.SingleProcess,
    ):
        self.resolved, self.config, self.run_dir = resolved, resolved.arguments, run
        self.cluster = cluster  # the processes the run trains in (one, or a multihost run's)
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
        # source -> (trained model, train data, val data), built when a phase first needs them
        self._caches: dict[str, tuple] = {}
        self._split: BoundarySplit | None | bool = None  # False: refused or not needed
        self._orders: dict = {}  # the cached datasets' shared example order, per split

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
                    "processes": self.cluster.num_processes,
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
        run, model = self.run_dir, self.model
        recipe = self.resolved.recipe
        trainable = apply_phase(model, self.spec, phase, self.resolved.train_bn)
        source = self._source(index, phase)
        on = ""
        if source == FEATURES:
            on = ", on cached features"
        elif source == BOUNDARY:
            on = f", on the cached inputs of {self._split.stage}"
        self.log(
            f"Phase {index + 1}/{len(self.resolved.phases)}: epochs {phase.start + 1}-{phase.end}, "
            f"{_describe(phase)}, lr {phase.lr:g}{on}: "
            f"{trainable:,} of {model.count_params():,} parameters trainable."
        )
        if source == IMAGES:
            trained, (train_data, val_data) = model, self._image_pipelines()
            if self.cluster.folds_batchnorm and self.config.fold_bn:
                # Trains the same variables; its save() writes the original model's layers.
                fold = self.resolved.precision == "mixed_bfloat16"
                trained = batchnorm_compute_model(model, fold=fold, fuse=True)
            checkpoint_path = run.model_path
        else:
            trained, train_data, val_data = self._cached(source)
            checkpoint_path = run.head_weights_path
        from_cache = source != IMAGES
        steps = self._steps_per_epoch()
        multipliers = None
        if recipe.layer_decay != 1 and phase.trains_backbone:
            multipliers = lr_multipliers(model, self.spec, recipe.layer_decay)
            rates = stage_rates(phase, self.spec.stage_names, recipe.layer_decay)
            self.log(
                f"  --layer-decay {recipe.layer_decay:g}: "
                + ", ".join(f"{stage} {rate:.3g}" for stage, rate in rates.items())
            )
        compile_classifier(
            trained, learning_rate(recipe, phase.lr, steps, phase.end - phase.start), recipe, multipliers
        )
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
                *self.data.callbacks(self.log),  # how many files the pipeline skipped
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
            self._images = self.cluster.share(self._images, self.batch_size, self.log)
        return self._images

    def _source(self, index: int, phase) -> str:
        """What ``phase`` trains on: ``IMAGES``, pooled ``FEATURES`` or ``BOUNDARY`` activations.

        A cache holds what the frozen layers compute before any phase trains them: pooled
        features serve head-only phases before the backbone first trains, boundary
        activations every phase up to the first that unfreezes all of it.
        """
        phases = self.resolved.phases
        if phase.unfrozen == ALL or any(p.unfrozen == ALL for p in phases[:index]):
            return IMAGES
        if not self.config.feature_cache:
            return IMAGES
        if not self.cluster.extracts_caches:
            return IMAGES
        if self.resolved.cached_views is None:
            self.log(
                f"--augment {self.resolved.recipe.augment} changes more than flips, so this phase trains "
                "on images rather than on cached features; --cache-views K caches K augmented views "
                "per image."
            )
            return IMAGES
        if not phase.trains_backbone and not any(p.trains_backbone for p in phases[:index]):
            return FEATURES
        return BOUNDARY if self._boundary_split() is not None else IMAGES

    def _boundary_split(self) -> BoundarySplit | None:
        """The classifier cut below the lowest stage any cached phase trains; ``None`` (said once)
        when the backbone cannot be cut there or no phase trains part of it."""
        if self._split is None:
            stage = boundary_stage(self.resolved.phases, self.spec.stage_names)
            try:
                self._split = split_at_stage(self.model, self.spec, stage) if stage else False
            except CutRefused as refused:
                self.log(f"No boundary cache: {refused}; phases that train part of the backbone use images.")
                self._split = False
        return self._split or None

    def _cached(self, source: str):
        """The model ``source`` trains and its train/val datasets, extracted once and kept in the run.

        With a boundary split, pooled features are its ``pooled`` model applied to the cached
        boundary activations: one pass over the images serves both kinds of phase.
        """
        if source not in self._caches:
            split = self._boundary_split()
            if split is not None:
                caches = self._extract(
                    split.bottom, {"boundary": split.stage}, f"the inputs of {split.stage}"
                )
                trained = split.top
                if source == FEATURES:
                    caches = self._extract(
                        split.pooled,
                        {"boundary": split.stage, "pooled": True},
                        f"pooled features from the cached inputs of {split.stage}",
                        from_caches=caches,
                    )
            if split is None or source == FEATURES:
                extractor, trained = split_classifier(self.model)
                if split is None:
                    caches = self._extract(extractor, {}, "backbone features")
            if not self._orders:
                views, depth, seed = len(self.resolved.cached_views), self._label_depth(), self.config.seed
                self._orders = {
                    "train": feature_cache.view_order(
                        caches["train"].labels, views, training=True, seed=seed, num_classes=depth
                    ),
                    "val": feature_cache.view_order(
                        caches["val"].labels, 1, training=False, num_classes=depth
                    ),
                }
            self._caches[source] = (
                trained,
                *(
                    feature_cache.views_dataset(caches[s], self._orders[s], self.batch_size)
                    for s in ("train", "val")
                ),
            )
        return self._caches[source]

    def _extract(self, model, extra: dict, what: str, from_caches: dict | None = None) -> dict:
        """``{"train": CachedViews, "val": ...}``: ``model`` applied to the train and val images, or
        to ``from_caches``; ``extra`` and the run's settings fix the model, the data and the views."""
        config, size, batch = self.config, self.resolved.image_size, self.batch_size
        identity = {
            "backbone": config.backbone,
            "weights": config.weights,
            "data": config.data,
            "precision": self.resolved.precision,
            "image_size": size,
            **extra,
        }
        views = self.resolved.cached_views
        if views not in (PLAIN_VIEW, FLIP_VIEWS):
            identity.update(augment=self.resolved.recipe.augment, seed=config.seed)
        caches = {}
        for split_name, data, data_views in (
            ("train", self.data.train, views),
            ("val", self.data.val, PLAIN_VIEW),
        ):
            batches = (
                feature_cache.cached_batches(from_caches[split_name], batch)
                if from_caches
                else feature_cache.image_views(
                    data, size, batch, data_views, self.resolved.recipe.augment, config.seed
                )
            )
            caches[split_name] = feature_cache.extract(
                model,
                batches,
                split=data,
                count=len(data) if hasattr(data, "__len__") else None,
                cache_dir=self.run_dir.features_dir,
                name=split_name + ("-pooled" if from_caches else ""),
                identity={**identity, "views": data_views},
                log=self.log,
                what=what,
            )
        return caches

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
        with self.cluster.evaluating(run.path, run.model_path.name):
            return self._evaluate(run, rows, best_epoch)

    def _evaluate(self, run: Run, rows: list[dict], best_epoch: int) -> tuple[int, dict]:
        final = (
            load_classifier(run.model_path)
            if run.has_model or self.cluster.evaluates_saved_model
            else self.model
        )
        step = after_fit.step()
        metrics = step.evaluate(
            after_fit.Finished(
                final,
                self.data,
                run,
                self.title,
                self.resolved.image_size,
                self.batch_size,
                # Grad-CAM on the mistakes uses a TensorFlow gradient tape: not under JAX (multihost).
                backbone=self.spec.name if keras.backend.backend() == "tensorflow" else None,
                tta=self.resolved.recipe.tta,
                log=self.log,
            )
        )
        metrics["best_epoch"] = best_epoch
        metrics["train_seconds"] = round(time.time() - self.started, 1)
        # Model selection saw the test split: the test accuracy is optimistic.
        metrics[selection.METRICS_KEY] = selection.validated_on_test(self.data)
        run.write_metrics(metrics)
        step.report(run)
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
    data.write_skips_to(run.skipped_path)  # the pipeline appends the files it skips as it meets them
