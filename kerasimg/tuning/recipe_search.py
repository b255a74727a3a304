"""``tune recipe``: a KerasTuner search over the training recipe, each trial an ordinary ``fit`` run.

Every trial is ``kerasimg.fit`` with the base settings (backbone, data, weights, size) and the
trial's recipe values, in ``<project>/trial_<id>/run``. Each run's feature caches are hard-linked
into ``<project>/features`` and from there into the next trial's run (they are keyed by the model,
the data and the views, which every trial shares), so head-only trials (``linear-probe`` on
pretrained weights) extract features once per set of views for the whole search. Each
trial stops early when validation accuracy stalls. The first trials are the ``seed`` and
``modern`` presets as points of the space, so the winner is never worse on validation than the
recipe a user would otherwise guess. The objective is the best epoch's validation accuracy
(a tie goes to a preset); the test split is never used to choose. Hyperband (the default with
pretrained weights) gives most trials a few epochs and the promising ones more; each trial trains
from the start with its budget, a fresh run. ``--tuner bayesian`` (the default from scratch,
where a few epochs tell recipes apart no better than chance) runs ``--trials``
Bayesian-optimisation trials at the full ``--epochs``. Rerunning the same command resumes:
KerasTuner's state and each trial's finished run are kept, an interrupted run is resumed. The
winner is written as ``best.toml``, a ``fit --config`` file.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras_tuner

from kerasimg.data.sources import data_identity
from kerasimg.errors import UserError
from kerasimg.training.config import FitConfig
from kerasimg.training.recipe import RECIPES
from kerasimg.tuning.guard import SettingsGuard
from kerasimg.tuning.oracle import OBJECTIVE
from kerasimg.tuning.project import SearchProject, distributed_role
from kerasimg.tuning.recipe_space import RecipeSpace, fit_settings

SEARCH_TUNERS = ("hyperband", "bayesian")
TUNERS = ("auto", *SEARCH_TUNERS)  # auto: chosen by the weights (RecipeSearch.__post_init__)


class TimeBudget:
    """An oracle mixin: after ``deadline`` (a ``time.time()``) no trial starts; running ones finish."""

    deadline: float | None = None

    def create_trial(self, tuner_id):
        if self.deadline is not None and time.time() >= self.deadline:
            # As KerasTuner's own stop does: a chief serving workers ends once none is left.
            self.tuner_ids.discard(tuner_id)
            return keras_tuner.engine.trial.Trial(self.get_space(), status="STOPPED")
        return super().create_trial(tuner_id)


class PresetsFirst:
    """An oracle mixin: the points in ``start_points`` (the presets) are drawn before any random one.

    KerasTuner's oracles take every new point from ``_random_values`` until their model of the
    space takes over; a point already tried counts as drawn, so a resumed search does not repeat it.
    """

    start_points: tuple[dict, ...] = ()

    def _random_values(self):
        for point in self.start_points:
            if not self._duplicate(point):
                return dict(point)
        return super()._random_values()


class RecipeHyperband(TimeBudget, PresetsFirst, SettingsGuard, keras_tuner.oracles.HyperbandOracle):
    """Hyperband over the recipe space, the presets first, refusing a rerun with other base settings."""


class RecipeBayesian(TimeBudget, PresetsFirst, SettingsGuard, keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation over the recipe space, the presets first, refusing a rerun with other base
    settings."""


@dataclass(frozen=True)
class BaseTraining:
    """What every trial shares: the model, the data and the budget. The space varies the rest."""

    backbone: str = "small_cnn"
    data: str = "scenes"
    weights: str = "imagenet"
    image_size: int | None = None
    batch_size: int = 32
    epochs: int = 10  # the most a trial trains (Hyperband's max_epochs)
    recipe: str = "modern"  # what the space does not set: the lr schedule, EMA, layer decay
    patience: int = 3  # epochs without a better validation accuracy before a trial stops
    seed: int = 0
    val_split: float = 0.1

    @property
    def pretrained(self) -> bool:
        return self.weights != "none"

    def fit_config(self, values: dict, epochs: int, out: str | os.PathLike) -> FitConfig:
        return FitConfig(
            backbone=self.backbone,
            data=self.data,
            weights=self.weights,
            image_size=self.image_size,
            batch_size=self.batch_size,
            epochs=epochs,
            recipe=self.recipe,
            early_stop=self.patience,
            seed=self.seed,
            val_split=self.val_split,
            out=str(out),
            **fit_settings(values),
        )


@dataclass
class RecipeSearch(SearchProject):
    project: str = "recipe"
    training: BaseTraining = field(default_factory=BaseTraining)
    space: RecipeSpace = field(default_factory=RecipeSpace)
    # auto: Hyperband with pretrained weights, Bayesian from scratch. Hyperband's shortest budgets
    # (2 of 30 epochs) leave every from-scratch recipe at chance: measured, 23 such trials chose nothing.
    tuner: str = "auto"
    trials: int = 10  # Bayesian optimisation's; Hyperband sizes itself from epochs and factor
    factor: int = 3
    # No trial starts after this many minutes of this launch (the running one finishes); None: no limit.
    max_minutes: float | None = None

    def __post_init__(self):
        if self.tuner == "auto":
            self.tuner = "hyperband" if self.training.pretrained else "bayesian"

    def validate(self) -> None:
        """Every setting checked before the first trial: a trial that raises is a failed trial."""
        if self.tuner not in SEARCH_TUNERS:
            raise UserError(f"--tuner must be one of {', '.join(TUNERS)}. Received: tuner={self.tuner!r}")
        if self.training.recipe not in RECIPES:
            raise UserError(
                f"--recipe must be one of {', '.join(RECIPES)}. Received: {self.training.recipe!r}"
            )
        for name, value, low in (
            ("trials", self.trials, 1),
            ("factor", self.factor, 2),
            ("epochs", self.training.epochs, 1),
            ("patience", self.training.patience, 1),
            ("max-minutes", 0 if self.max_minutes is None else self.max_minutes, 0),
        ):
            if value < low:
                raise UserError(
                    f"--{name} must be at least {low}. Received: {name.replace('-', '_')}={value}"
                )
        self.space.validate(self.training.pretrained)
        hp = self.space.hyperparameters(self.training.pretrained)
        for values in _corners(hp):  # every value a trial can draw makes a valid fit
            self.training.fit_config(values, self.training.epochs, self.project_dir / "check").validate()

    def remaining(self) -> int | None:
        """Trials a Bayesian search has yet to finish; None for Hyperband, which sizes its own brackets."""
        if self.tuner != "bayesian":
            return None
        return max(self.trials - len(self.completed_trials()), 0)

    def fingerprint(self) -> dict:
        """The settings that change a trial's result, kept by the oracle to refuse stale reuse."""
        training = dataclasses.asdict(self.training)
        training["data"] = data_identity(training["data"])
        return {
            **training,
            "space": self.space.to_dict(),
            "tuner": self.tuner,
            "trials": self.trials,
            "factor": self.factor,
        }

    def oracle(self) -> keras_tuner.Oracle:
        common = dict(
            objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
            hyperparameters=self.space.hyperparameters(self.training.pretrained),
            allow_new_entries=False,
            tune_new_entries=False,
            seed=self.training.seed,
            settings=self.fingerprint(),
        )
        if self.tuner == "hyperband":
            oracle = RecipeHyperband(max_epochs=self.training.epochs, factor=self.factor, **common)
        else:
            oracle = RecipeBayesian(max_trials=self.trials, **common)
        oracle.start_points = tuple(self.space.preset_points(self.training.pretrained).values())
        return oracle


def _corners(hp: keras_tuner.HyperParameters) -> list[dict]:
    """The values at each end of every range and each choice, one setting varied at a time."""
    base = {p.name: _ends(p)[0] for p in hp.space}
    return [base] + [{**base, p.name: value} for p in hp.space for value in _ends(p)[1:]]


def _ends(parameter) -> list:
    if isinstance(parameter, keras_tuner.engine.hyperparameters.Choice):
        return list(parameter.values)
    if isinstance(parameter, keras_tuner.engine.hyperparameters.Fixed):
        return [parameter.value]
    return [parameter.min_value, parameter.max_value]


class RecipeTuner(keras_tuner.Tuner):
    """Each trial is a ``fit`` run in its trial folder; the space is the oracle's, declared up front."""

    def __init__(self, oracle, search: RecipeSearch, log=print, **kwargs):
        super().__init__(oracle, hypermodel=None, **kwargs)
        self.recipe_search, self.log = search, log
        if distributed_role() == "worker":  # its oracle is a client of the chief's
            self.oracle.create_trial = _pausing_when_idle(self.oracle.create_trial)

    def _populate_initial_space(self):
        pass  # the oracle declares every hyperparameter; there is no model to build to find them

    def run_trial(self, trial, *args, **kwargs):
        from kerasimg.training.driver import fit
        from kerasimg.training.resume import load_run_config
        from kerasimg.training.run import Run

        values = trial.hyperparameters.values
        epochs = int(values.get("tuner/epochs", self.recipe_search.training.epochs))
        out = Path(self.get_trial_dir(trial.trial_id)) / "run"
        run = Run(out)
        settings = fit_settings(values)
        self.log(
            f"Trial {trial.trial_id}: {epochs} epoch(s), "
            + ", ".join(f"{k} {v}" for k, v in settings.items())
        )
        quiet = lambda *_: None  # noqa: E731 - the trial's own run folder keeps its log
        shared = self.recipe_search.project_dir / "features"
        if not run.finished:
            share_caches(shared, run.features_dir)
            if run.exists:
                result = fit(load_run_config(out), resume=True, log=quiet)
            else:
                result = fit(self.recipe_search.training.fit_config(values, epochs, out), log=quiet)
            share_caches(run.features_dir, shared)
            metrics = result.metrics
        else:
            metrics = run.read_metrics()
        return trial_metrics(run, metrics)


def _pausing_when_idle(create_trial, seconds: float = 1.0):
    """``create_trial`` that waits ``seconds`` after an IDLE answer (Hyperband waiting on a bracket):
    KerasTuner's search loop asks again at once, and a worker would spin on the chief's server."""

    def create(tuner_id):
        trial = create_trial(tuner_id)
        if trial.status == keras_tuner.engine.trial.TrialStatus.IDLE:
            time.sleep(seconds)
        return trial

    return create


def share_caches(source: Path, target: Path) -> None:
    """Hard-link each complete feature cache of ``source`` that ``target`` lacks (a copy where the
    file system has no links). Complete: its ``.json`` record exists, written last by the cache."""
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for record in source.glob("*.json"):
        stem = str(record.with_suffix(""))
        for suffix in (".npy", ".labels.npy", ".json"):  # the record last, as the cache writes it
            file, linked = Path(stem + suffix), target / Path(stem + suffix).name
            if file.exists() and not linked.exists():
                try:
                    os.link(file, linked)
                except FileExistsError:  # another worker's trial linked it first: the same cache
                    continue
                except OSError:
                    _copy_into_place(file, linked)


def _copy_into_place(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary name, so no reader sees half a file."""
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copy2(source, staged)
    os.replace(staged, target)


def trial_metrics(run, metrics: dict) -> dict[str, float]:
    """What a trial reports: the best epoch's validation accuracy (the objective), and its costs."""
    from kerasimg.training.reports import read_history

    history = read_history(run.history_path)
    best = max((r.get(OBJECTIVE, 0.0) for r in history), default=0.0)
    return {
        OBJECTIVE: float(best),
        "epochs_trained": float(len(history)),
        "train_seconds": float(metrics.get("train_seconds", 0.0)),
        "test_accuracy": float(metrics.get("test_accuracy", 0.0)),
    }


def run_recipe_search(search: RecipeSearch, *, log=print) -> list[dict]:
    """Search (or resume), write results.csv/md and best.toml; return the rows, best first.

    As KerasTuner's chief (``tune recipe --workers``) this serves the oracle until the workers have
    trained every trial, then writes the files; as a worker it trains the trials it is given and
    returns no rows. The process that started them holds the project's lock.
    """
    search.validate()
    with search.lock_unless_distributed():
        return _search(search, distributed_role(), log)


def _search(search: RecipeSearch, role: str, log) -> list[dict]:
    from kerasimg.tuning.recipe_results import write_recipe_results

    started = time.time()
    project_dir = search.project_dir
    if search.overwrite and role != "worker":  # a worker never clears what the others share
        search.clear()
    tuner = RecipeTuner(
        search.oracle(),
        search,
        log=log,
        directory=str(project_dir.parent),
        project_name=project_dir.name,
        overwrite=False,
    )
    if role == "worker":  # its oracle is the chief's, over gRPC
        tuner.search(verbose=0)
        return []
    done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    if done:
        log(f"Resuming {project_dir}: {done} trial(s) already done.")
    if search.max_minutes is not None:
        tuner.oracle.deadline = started + 60 * search.max_minutes
    tuner.search(verbose=0)
    if search.max_minutes is not None and time.time() >= tuner.oracle.deadline:
        log(
            f"Stopped starting trials after --max-minutes {search.max_minutes:g}; the same command "
            "again continues the search."
        )
    return write_recipe_results(tuner.oracle, search)
