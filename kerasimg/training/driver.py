"""The fit driver: resolved arguments -> data -> model -> a phase loop -> a run directory.

The run directory (``kerasimg.training.run.Run`` knows its layout) gets everything
as soon as it exists, so Ctrl-C or a crash loses nothing already done, and
``resume`` continues from Keras's ``BackupAndRestore`` state. What each phase trains
on is ``phase_sources``'s to say, and whatever differs across the processes of a
multihost run is its cluster's (``multihost``): the loop has no branch on either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from kerasimg import selection
from kerasimg.data import LabelledData, load_data
from kerasimg.data.duplicates import leakage_warning
from kerasimg.data.exclude import read_exclusions
from kerasimg.errors import UserError
from kerasimg.files import write_text
from kerasimg.models import build_classifier, get_backbone
from kerasimg.progress import progress_verbosity
from kerasimg.training import after_fit, lr_finder, multihost, reports
from kerasimg.training.callbacks import (
    best_checkpoint,
    check_free_space,
    checkpoint_bytes,
    forget_restored_epoch,
    phase_callbacks,
)
from kerasimg.training.config import FitConfig, ResolvedFit
from kerasimg.training.layer_decay import lr_multipliers, stage_rates
from kerasimg.training.multilabel import ACTIVATIONS
from kerasimg.training.phase_sources import PhaseData
from kerasimg.training.precision import dtype_policy
from kerasimg.training.recipe import (
    check_split_size,
    class_weights,
    compile_classifier,
    learning_rate,
    steps_per_epoch,
    train_counts,
)
from kerasimg.training.record import run_record
from kerasimg.training.resume import check_out
from kerasimg.training.run import Run
from kerasimg.training.schedules import apply_phase, describe
from kerasimg.training.trackers import open_tracker

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


def fit(config: FitConfig, *, resume: bool = False, callbacks: list | None = None, log=print) -> FitResult:
    """Train a classifier as ``config`` says and write its run directory.

    Every argument is checked before any data is read. With ``resume=True``,
    ``config.out`` must be an earlier run's directory (see ``load_run_config``):
    training continues from its last completed epoch, or extends a finished run to
    a larger ``epochs``. ``callbacks`` are extra Keras callbacks, run after the
    driver's own. The run directory is locked for the whole run.
    """
    resolved = config.resolve()
    if config.folds and config.fold is None:
        raise UserError(
            "A run of --folds K trains one fold; kerasimg.fit(folds=K) trains them all (fit_folds)."
        )
    started = time.time()
    keras.utils.set_random_seed(config.seed)  # before the processes join, so they need no shared seed
    cluster = multihost.processes(config.strategy, config.connect_timeout, log)
    cluster.check_same_seed(config.seed)
    if config.out:  # process 0 of a multihost run checks; every process stops if it refuses
        cluster.shared_or_raise(lambda: check_out(Run(config.out), resume, resolved))
    for note in cluster.setup_notes(resolved.precision, config.batch_size):
        log(note)
    data = load_data(
        config.data,
        val_split=config.val_split,
        val_from=config.val_from,
        seed=config.seed,
        max_pixels=config.max_pixels,
        verify=config.verify,
        exclude=read_exclusions(config.exclude, config.exclude_issues) if config.exclude else None,
        image_dir=config.image_dir,
        folds=config.folds,
        fold=config.fold,
        task=config.task,
        log=log,
    )
    # Said once, when the run starts and its data has been read (a bad --data is the only line).
    for note in () if resume else resolved.notes:
        log(note)
    for note in data.notes:
        log(note)
    if leak := leakage_warning(data.train, data.test):
        log(leak)
    finding = None
    if config.lr_find and not resume:  # a resumed run keeps the rate its config.json records
        finding = lr_finder.range_test(
            data,
            backbone=config.backbone,
            weights=config.weights,
            image_size=resolved.image_size,
            batch_size=config.batch_size,
            recipe=config.recipe,
            seed=config.seed,
            log=log,
        )
        log(f"Training with the suggested learning rate {finding.suggestion:.3g} ({finding.rule} rule).")
        resolved = dataclasses.replace(config, lr=finding.suggestion).resolve()
    with cluster.scope(), dtype_policy(resolved.precision):
        # Built before the run directory exists, so a failed weights fetch leaves nothing behind.
        model = build_classifier(
            config.backbone,
            data.num_classes,
            image_size=resolved.image_size,
            weights=config.weights,
            dropout=config.dropout,
            head=config.head,
            activation=ACTIVATIONS[data.multilabel],
        )
        run_path = Path(cluster.from_process_zero(str(resolved.run_dir(data.name))))
        # Processes 1.. of a multihost run write the same files into a scratch folder deleted at the end.
        with cluster.writing(run_path) as path:
            run = Run(path)
            with run.lock():
                if not resume and run.exists:  # another process started it while we read the data
                    raise UserError(
                        f"The run directory {run.path} already holds a run; choose another --out."
                    )
                trainer = _Trainer(resolved, run, data, model, callbacks, log, cluster, finding)
                best_epoch, metrics = trainer.run(resume)
    return FitResult(
        run_path, metrics["test_accuracy"], metrics["test_loss"], best_epoch, time.time() - started, metrics
    )


class _Trainer:
    """One run's phase loop over a locked run directory."""

    def __init__(
        self,
        resolved: ResolvedFit,
        run: Run,
        data: LabelledData,
        model,
        callbacks,
        log,
        cluster,
        finding=None,
    ):
        self.resolved, self.config, self.run_dir = resolved, resolved.arguments, run
        self.finding = finding  # --lr-find's range test, recorded with the run
        self.cluster = cluster  # the processes the run trains in (one, or a multihost run's)
        self.data, self.model, self.replicas = data, model, cluster.replicas
        self.spec = get_backbone(self.config.backbone)
        self.batch_size = self.config.batch_size * self.replicas  # --batch-size is per replica
        self.extra_callbacks = callbacks or []
        self.log = log
        self.title = f"{self.spec.name} on {data.name} ({resolved.schedule})"
        self.boundaries = [p.start for p in resolved.phases[1:]]
        check_split_size(resolved.recipe, data.train, self.config.data)
        counts = train_counts(data.train, data.num_classes)
        self.class_weight = class_weights(resolved.recipe, data.class_names, counts)
        self.phase_data = PhaseData(resolved, run, data, model, self.spec, self.batch_size, cluster, log)

    def run(self, resume: bool) -> tuple[int, dict]:
        run = self.run_dir
        self.started = time.time()
        run.path.mkdir(parents=True, exist_ok=True)
        check_free_space(run.path, checkpoint_bytes(self.model))
        phases = self.resolved.phases
        # What the run already did, as process 0 (which alone keeps the run) sees it.
        finished, best, done = self.cluster.from_process_zero(
            [
                resume and run.finished,
                # The best validation accuracy, across phases.
                reports.best_val_accuracy(run.history_path) if resume else None,
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
        # Opened before the first epoch: a missing package or an unreachable server stops the run here.
        self.tracker = open_tracker(
            self.config.tracker, run, run.read_config(), resume=resume, writes=self.cluster.writes
        )
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
        record = run_record(
            resolved,
            data,
            self.model,
            self.spec,
            out=str(run.path),
            replicas=self.replicas,
            processes=self.cluster.num_processes,
            global_batch_size=self.batch_size,
            created=created,
        )
        if self.finding is not None:
            record["lr_find"] = {
                k: v for k, v in self.finding.as_dict().items() if k not in ("losses", "smoothed")
            }
            lr_finder.write_finding(self.finding, run.path)  # lr_find.png, .csv, .json beside the curves
        elif resume and run.exists:
            record.update({k: v for k, v in run.read_config().items() if k == "lr_find"})
        run.write_config(record)
        self.log(f"Run directory: {run.path}")

    def _train_phase(self, index: int, phase, best: float | None) -> float | None:
        run, model, recipe = self.run_dir, self.model, self.resolved.recipe
        trainable = apply_phase(model, self.spec, phase, self.resolved.train_bn)
        source = self.phase_data.source(index, phase)
        self.log(
            f"Phase {index + 1}/{len(self.resolved.phases)}: epochs {phase.start + 1}-{phase.end}, "
            f"{describe(phase)}, lr {phase.lr:g}{source.note(self.phase_data)}: "
            f"{trainable:,} of {model.count_params():,} parameters trainable."
        )
        training = source.training(self.phase_data)
        steps = steps_per_epoch(self.data.train, self.batch_size)
        multipliers = None
        if recipe.layer_decay != 1 and phase.trains_backbone:
            multipliers = lr_multipliers(model, self.spec, recipe.layer_decay)
            rates = stage_rates(phase, self.spec.stage_names, recipe.layer_decay)
            self.log(
                f"  --layer-decay {recipe.layer_decay:g}: "
                + ", ".join(f"{stage} {rate:.3g}" for stage, rate in rates.items())
            )
        rate = learning_rate(recipe, phase.lr, steps, phase.end - phase.start)
        compile_classifier(
            training.model,
            rate,
            recipe,
            multipliers,
            multilabel=self.data.multilabel,
            weighted=self.cluster.weighs_examples,
        )
        checkpoint = best_checkpoint(training.checkpoint_path, weights_only=training.weights_only, best=best)
        self.cluster.copy_from_process_zero(run.backup_dir(index))  # every process restores the same state
        callbacks = phase_callbacks(
            run,
            index,
            checkpoint,
            recipe=recipe,
            needed_bytes=checkpoint_bytes(model),
            title=self.title,
            boundaries=self.boundaries,
            correcting=self.cluster.fit_callbacks(self.data.val, self.batch_size),
            extra=[
                *self.data.callbacks(self.log),
                *self.tracker.callbacks(),
                *self.extra_callbacks,
            ],  # data: the files it skipped
        )
        try:
            training.model.fit(
                training.train,
                validation_data=training.val,
                initial_epoch=phase.start,
                epochs=phase.end,
                callbacks=callbacks,
                shuffle=False,  # the pipelines shuffle, seeded
                class_weight=self.class_weight,
                verbose=progress_verbosity(),
            )
        except BaseException:
            # Ctrl-C or a crash inside a cached phase: its best head so far still becomes model.keras,
            # so evaluate and export work on the interrupted run. The original error goes on.
            if checkpoint.best is not None and (best is None or checkpoint.best > best):
                with contextlib.suppress(Exception):
                    source.keep_best(self.phase_data, training)
            raise
        forget_restored_epoch(training.model)
        improved = checkpoint.best is not None and (best is None or checkpoint.best > best)
        if improved:
            source.keep_best(self.phase_data, training)
        return checkpoint.best if improved else best

    def _finish(self) -> tuple[int, dict]:
        run = self.run_dir
        rows = reports.read_history(run.history_path)
        reports.write_history(run.history_path, rows)
        reports.plot_curves(rows, run.curves_path, self.title, self.boundaries)
        best_epoch = int(max(rows, key=lambda r: r.get("val_accuracy", -1))["epoch"]) + 1 if rows else 0
        with self.cluster.evaluating(run, self.model) as final:
            return self._evaluate(final, best_epoch)

    def _evaluate(self, final, best_epoch: int) -> tuple[int, dict]:
        run, step = self.run_dir, after_fit.step()
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
                processes=self.cluster,
            )
        )
        metrics["best_epoch"] = best_epoch
        metrics["train_seconds"] = round(time.time() - self.started, 1)
        # Model selection saw the test split: the test accuracy is optimistic.
        metrics[selection.METRICS_KEY] = selection.validated_on_test(self.data)
        run.write_metrics(metrics)
        step.report(run)
        files = [run.config_path, run.metrics_path, run.history_path, run.curves_path, run.confusion_path]
        self.tracker.finish(metrics, [*files, run.reliability_path, run.report_path, run.model_path])
        return best_epoch, metrics


def _write_skipped(run: Run, data: LabelledData) -> None:
    lines = [f"{path}\t{reason}" for path, reason in sorted(data.skipped.items())]
    write_text(run.skipped_path, "\n".join(lines) + ("\n" if lines else ""))
    data.write_skips_to(run.skipped_path)  # the pipeline appends the files it skips as it meets them
