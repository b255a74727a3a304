"""Run the compound-scaling search with KerasTuner, alone or as KerasTuner's chief/worker.

KerasTuner keeps its state under ``<directory>/<project>/`` (oracle.json, one
trial_*/trial.json per trial); rerunning the same command reloads it and trains only
the triples that are left. Distributed runs use KerasTuner's own environment
variables (``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``):
the chief serves the oracle and writes the results, workers train trials.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import keras_tuner
from keras_tuner.src import utils as keras_tuner_utils

from kerasimg.data.sources import data_identity
from kerasimg.errors import UserError
from kerasimg.progress import progress_verbosity
from kerasimg.tuning.hypermodel import CompoundHyperModel, TrialTraining
from kerasimg.tuning.oracle import CompoundGridOracle, triple_key
from kerasimg.tuning.project import SearchProject, distributed_role
from kerasimg.tuning.results import trial_rows, write_results
from kerasimg.tuning.space import CompoundSpace, Triple, read_space_file


def _not_a_notebook_unless_one_runs() -> None:
    """KerasTuner takes any process with IPython installed for a notebook, and then "clears the output"
    after every trial by writing ANSI escapes into the terminal or log; only a running IPython counts."""
    if keras_tuner_utils.IS_NOTEBOOK:
        import IPython

        keras_tuner_utils.IS_NOTEBOOK = IPython.get_ipython() is not None


_not_a_notebook_unless_one_runs()


class CompoundTuner(keras_tuner.Tuner):
    """A ``Tuner`` whose trials are built and trained by a ``CompoundHyperModel``."""

    write_after_trial = True  # rewrite results after each trial (a chief writes them at the end)

    def _populate_initial_space(self):
        # The oracle declares the whole space; KerasTuner would otherwise build one
        # full-size model with default values just to discover hyperparameters.
        pass

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        return self.hypermodel.fit(hp, self.hypermodel.build(hp), *args, **kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.write_after_trial:
            write_results(self.oracle, self.project_dir)


@dataclass
class CompoundSearch(SearchProject):
    """Everything one search needs; the CLI fills it from flags and a space file."""

    project: str = "compound"
    space: CompoundSpace = field(default_factory=CompoundSpace)
    training: TrialTraining = field(default_factory=TrialTraining)
    verbose: int | str = "auto"

    @classmethod
    def from_settings(
        cls,
        space_file: str | os.PathLike | None = None,
        *,
        directory: str = "tuning",
        project: str = "compound",
        overwrite: bool = False,
        **settings,
    ) -> CompoundSearch:
        """Built-in defaults, then ``space_file``, then ``settings``; every value checked before any trial.

        ``settings`` are ``CompoundSpace`` and ``TrialTraining`` fields (``alpha``,
        ``base_resolution``, ``epochs``, ``data``...); ``None`` values are ignored.
        """
        values = read_space_file(space_file) if space_file else {}
        values.update({k: v for k, v in settings.items() if v is not None})
        space_keys = {f.name for f in dataclasses.fields(CompoundSpace)}
        training_keys = {f.name for f in dataclasses.fields(TrialTraining)}
        unknown = sorted(set(values) - space_keys - training_keys)
        if unknown:
            raise UserError(f"Unknown search settings: {', '.join(unknown)}.")
        space = CompoundSpace(**{k: v for k, v in values.items() if k in space_keys})
        training = TrialTraining(**{k: v for k, v in values.items() if k in training_keys})
        training.validate()
        search = cls(
            directory=directory, project=project, overwrite=overwrite, space=space, training=training
        )
        _ = search.project_dir  # the project name and the directory are checked before anything runs
        return search

    def fingerprint(self) -> dict:
        """Every setting that changes a trial's result, kept with the project to refuse stale reuse.

        The grid, the constraint and phi are kept by the oracle as its list of triples.
        """
        training = dataclasses.asdict(self.training)
        training["data"] = data_identity(training["data"])  # a folder: where it is, not its spelling
        return {"base_resolution": self.space.base_resolution, **training}

    def remaining(self, triples: list[Triple]) -> int:
        """How many of ``triples`` have no completed trial in the project yet."""
        done = {triple_key(trial["hyperparameters"]["values"]) for trial in self.completed_trials()}
        return sum(triple_key(vars(t)) not in done for t in triples)


def run_search(search: CompoundSearch, *, hypermodel: keras_tuner.HyperModel | None = None, log=print):
    """Search, then (unless this process is a worker) write results.csv/md and search.png.

    Returns the result rows, best first (empty for a worker). ``hypermodel`` replaces
    the real one (tests use one with a made-up score).
    """
    triples = search.space.require_feasible()
    project_dir = search.project_dir
    with search.lock_unless_distributed():
        return _run_search(search, triples, project_dir, distributed_role(), hypermodel, log)


def _run_search(search, triples, project_dir, role, hypermodel, log):
    # Every setting is checked (and the data read) before the first trial: KerasTuner
    # records a trial that raises as failed, and a user's mistake is no trial's fault.
    search.training.validate()
    # "auto" is a live bar on a terminal and one line per epoch in a log (Keras's "auto" always draws).
    verbose = progress_verbosity() if search.verbose == "auto" else search.verbose
    if hypermodel is None:
        hypermodel = CompoundHyperModel(search.training, search.space.base_resolution, verbose=verbose)
    if role != "chief" and isinstance(hypermodel, CompoundHyperModel):
        hypermodel.prepare()
    overwrite = search.overwrite
    if overwrite and role == "worker":
        log(
            "--overwrite ignored on a worker: only the chief (or a single process) "
            "may clear a shared directory."
        )
        overwrite = False
    if overwrite:
        search.clear()
    grid = search.space.grid_size
    log(
        f"Compound search: {len(triples)} of {grid} grid triples meet |alpha*beta^2*gamma^2 - "
        f"{search.space.target:g}| <= {search.space.tolerance:g} (phi={search.space.phi:g}, "
        f"base resolution {search.space.base_resolution})."
    )
    oracle = CompoundGridOracle(triples, search.space.phi, search.fingerprint())
    tuner = CompoundTuner(
        oracle,
        hypermodel,
        directory=str(project_dir.parent),
        project_name=project_dir.name,
        overwrite=False,  # cleared above, only if it is a search project
    )
    tuner.write_after_trial = role == "single"
    done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
    if done and role != "worker":
        log(f"Resuming {tuner.project_dir}: {done} trial(s) already done, {len(triples) - done} to train.")
    try:
        tuner.search(verbose=verbose)
    except RuntimeError as error:  # KerasTuner stops after consecutive failed trials
        if "consecutive failures" not in str(error):
            raise
        log(f"KerasTuner stopped the search: {str(error).splitlines()[0]}")
    if role == "worker":
        return []
    write_results(tuner.oracle, tuner.project_dir)
    return trial_rows(tuner.oracle)


def failed_rows(rows: list[dict]) -> list[dict]:
    """The rows of trials that failed (rerunning the search retries those not failed by their triple)."""
    return [r for r in rows if r["status"] in ("FAILED", "INVALID")]
