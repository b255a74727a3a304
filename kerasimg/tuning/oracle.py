"""A KerasTuner oracle that hands out a precomputed list of feasible compound triples.

KerasTuner's ``GridSearch`` walks the full Cartesian product, and rejecting a point
by raising in ``build()`` counts as a failed trial (the search aborts after three in
a row). Feasibility is known before any model exists, so this oracle declares
alpha, beta and gamma as ``Choice`` hyperparameters (they show in KerasTuner's own
trial files and summaries) and ``populate_space`` offers only the feasible
combinations, in order, each once. Completed trials are never offered again, which
is what makes a rerun resume; KerasTuner sends trials that were running when a
search died back through its retry queue.

A trial that raises ``FailedTrialError`` failed for its triple's own sake and stays
failed. Any other exception (a full disk, memory, an interrupted data read) is not
the triple's fault: the trial is marked failed for this run and sent back through
the retry queue on the next run. The oracle's state also keeps the settings the
search started with; a rerun with other settings is refused, naming what differs.
"""

from __future__ import annotations

import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from kerasimg.errors import UserError
from kerasimg.tuning.guard import SettingsGuard
from kerasimg.tuning.space import Triple

OBJECTIVE = "val_accuracy"
COEFFICIENTS = ("alpha", "beta", "gamma")


def triple_key(values: dict) -> tuple[float, float, float]:
    return tuple(round(float(values[name]), 9) for name in COEFFICIENTS)


class CompoundGridOracle(SettingsGuard, keras_tuner.Oracle):
    """Offers each triple of ``triples`` once, as hyperparameters alpha, beta, gamma (and fixed phi)."""

    settings_key = "compound_settings"

    def __init__(self, triples: list[Triple], phi: float, settings: dict | None = None, **kwargs):
        if not triples:
            raise ValueError("CompoundGridOracle needs at least one triple.")
        hp = keras_tuner.HyperParameters()
        for name in COEFFICIENTS:
            hp.Choice(name, sorted({float(getattr(t, name)) for t in triples}), ordered=True)
        hp.Fixed("phi", float(phi))
        super().__init__(
            objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
            max_trials=len(triples),
            hyperparameters=hp,
            allow_new_entries=False,
            settings=settings,
            **kwargs,
        )
        self.triples = list(triples)
        self.phi = float(phi)
        self.retry_next_run: set[str] = set()

    def populate_space(self, trial_id):
        offered = {triple_key(trial.hyperparameters.values) for trial in self.trials.values()}
        for triple in self.triples:
            values = {"alpha": triple.alpha, "beta": triple.beta, "gamma": triple.gamma, "phi": self.phi}
            if triple_key(values) not in offered:
                return {"status": TrialStatus.RUNNING, "values": values}
        return {"status": TrialStatus.STOPPED, "values": None}

    def get_state(self):
        state = super().get_state()
        state["compound_grid"] = {"phi": self.phi, "triples": [triple_key(vars(t)) for t in self.triples]}
        state["compound_retry_next_run"] = sorted(self.retry_next_run)
        return state

    def end_trial(self, trial):
        # INVALID is what KerasTuner gives any exception but FailedTrialError.
        if trial.status == TrialStatus.INVALID:
            self.retry_next_run.add(trial.trial_id)
        super().end_trial(trial)

    def reload(self):
        super().reload()
        # Failures that were not the triple's fault get another run, like interrupted trials.
        for trial_id in sorted(self.retry_next_run):
            trial = self.trials.get(trial_id)
            if trial is not None and trial.status == TrialStatus.FAILED:
                self._run_times[trial_id] = 0
                self._retry_queue.append(trial_id)
        self.retry_next_run = set()

    def set_state(self, state):
        saved = state.get("compound_grid")
        mine = {"phi": self.phi, "triples": [triple_key(vars(t)) for t in self.triples]}
        if saved is not None and (
            saved["phi"] != mine["phi"] or [tuple(t) for t in saved["triples"]] != mine["triples"]
        ):
            raise UserError(
                f"The search in {self._project_dir} was started with a different grid "
                f"({len(saved['triples'])} feasible triples at phi={saved['phi']:g}; this command has "
                f"{len(mine['triples'])} at phi={mine['phi']:g}). Rerun with --overwrite to start over, "
                "or give this search its own --project NAME."
            )
        self.retry_next_run = set(state.get("compound_retry_next_run", []))
        super().set_state(state)
