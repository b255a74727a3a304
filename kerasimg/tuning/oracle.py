"""A KerasTuner oracle that hands out a precomputed list of feasible compound triples.

KerasTuner's ``GridSearch`` walks the full Cartesian product, and rejecting a point
by raising in ``build()`` counts as a failed trial (the search aborts after three in
a row). Feasibility is known before any model exists, so this oracle declares
alpha, beta and gamma as ``Choice`` hyperparameters (they show in KerasTuner's own
trial files and summaries) and ``populate_space`` offers only the feasible
combinations, in order, each once. Completed trials are never offered again, which
is what makes a rerun resume; KerasTuner sends trials that were running when a
search died back through its retry queue.
"""

from __future__ import annotations

import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from kerasimg.errors import UserError
from kerasimg.tuning.space import Triple

OBJECTIVE = "val_accuracy"
COEFFICIENTS = ("alpha", "beta", "gamma")


def _key(values: dict) -> tuple[float, float, float]:
    return tuple(round(float(values[name]), 9) for name in COEFFICIENTS)


class CompoundGridOracle(keras_tuner.Oracle):
    """Offers each triple of ``triples`` once, as hyperparameters alpha, beta, gamma (and fixed phi)."""

    def __init__(self, triples: list[Triple], phi: float, **kwargs):
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
            **kwargs,
        )
        self.triples = list(triples)
        self.phi = float(phi)

    def populate_space(self, trial_id):
        offered = {_key(trial.hyperparameters.values) for trial in self.trials.values()}
        for triple in self.triples:
            values = {"alpha": triple.alpha, "beta": triple.beta, "gamma": triple.gamma, "phi": self.phi}
            if _key(values) not in offered:
                return {"status": TrialStatus.RUNNING, "values": values}
        return {"status": TrialStatus.STOPPED, "values": None}

    def get_state(self):
        state = super().get_state()
        state["compound_grid"] = {"phi": self.phi, "triples": [_key(vars(t)) for t in self.triples]}
        return state

    def set_state(self, state):
        saved = state.get("compound_grid")
        mine = {"phi": self.phi, "triples": [_key(vars(t)) for t in self.triples]}
        if saved is not None and (
            saved["phi"] != mine["phi"] or [tuple(t) for t in saved["triples"]] != mine["triples"]
        ):
            raise UserError(
                f"The search in {self._project_dir} was started with a different grid "
                f"({len(saved['triples'])} feasible triples at phi={saved['phi']:g}; this command has "
                f"{len(mine['triples'])} at phi={mine['phi']:g}). Rerun with --overwrite to start over, "
                "or give this search its own --project NAME."
            )
        super().set_state(state)
