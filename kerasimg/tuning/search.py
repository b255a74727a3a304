"""Run the compound-scaling search with KerasTuner, alone or as KerasTuner's chief/worker.

KerasTuner keeps its state under ``<directory>/<project>/`` (oracle.json, one
trial_*/trial.json per trial); rerunning the same command reloads it and trains only
the triples that are left. Distributed runs use KerasTuner's own environment
variables (``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``):
the chief serves the oracle and writes the results, workers train trials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import keras_tuner

from kerasimg.errors import UserError
from kerasimg.tuning.hypermodel import CompoundHyperModel, TrialTraining
from kerasimg.tuning.oracle import CompoundGridOracle
from kerasimg.tuning.results import trial_rows, write_results
from kerasimg.tuning.space import CompoundSpace


def distributed_role() -> str:
    """ "single", "chief" or "worker", from KerasTuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if v not in os.environ]
    if missing:
        raise UserError(f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} is not; set all three.")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


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
class CompoundSearch:
    """Everything one search needs; the CLI fills it from flags and a space file."""

    space: CompoundSpace = field(default_factory=CompoundSpace)
    training: TrialTraining = field(default_factory=TrialTraining)
    directory: str = "tuning"
    project: str = "compound"
    overwrite: bool = False
    verbose: int | str = "auto"

    @property
    def project_dir(self) -> Path:
        """KerasTuner's folder for this search, where the results are written too."""
        return Path(self.directory) / self.project


def run_search(search: CompoundSearch, *, hypermodel: keras_tuner.HyperModel | None = None, log=print):
    """Search, then (unless this process is a worker) write results.csv/md and search.png.

    Returns the result rows, best first (empty for a worker). ``hypermodel`` replaces
    the real one (tests use one with a made-up score).
    """
    triples = search.space.require_feasible()
    role = distributed_role()
    overwrite = search.overwrite
    if overwrite and role == "worker":
        log(
            "--overwrite ignored on a worker: only the chief (or a single process) "
            "may clear a shared directory."
        )
        overwrite = False
    grid = len(search.space.grid())
    log(
        f"Compound search: {len(triples)} of {grid} grid triples meet |alpha*beta^2*gamma^2 - "
        f"{search.space.target:g}| <= {search.space.tolerance:g} (phi={search.space.phi:g}, "
        f"base resolution {search.space.base_resolution})."
    )
    oracle = CompoundGridOracle(triples, search.space.phi)
    tuner = CompoundTuner(
        oracle,
        hypermodel
        or CompoundHyperModel(search.training, search.space.base_resolution, verbose=search.verbose),
        directory=search.directory,
        project_name=search.project,
        overwrite=overwrite,
    )
    tuner.write_after_trial = role == "single"
    done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
    if done and role != "worker":
        log(f"Resuming {tuner.project_dir}: {done} trial(s) already done, {len(triples) - done} to train.")
    tuner.search(verbose=search.verbose)
    if role == "worker":
        return []
    write_results(tuner.oracle, tuner.project_dir)
    return trial_rows(tuner.oracle)
