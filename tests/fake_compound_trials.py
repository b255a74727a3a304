"""``python -m fake_compound_trials compound ...``: the tune CLI with trials that only record themselves.

Used by the chief/worker test: each process parses the same flags as
``kerasimg.tune`` and runs ``run_search`` with ``FakeHyperModel``, so several
processes can complete a search in seconds and leave a marker per trial.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import keras_tuner

from kerasimg.tune import build_parser, search_from_args
from kerasimg.tuning.search import run_search


def fake_score(alpha: float, beta: float, gamma: float) -> float:
    """A made-up objective with a unique best (close to the paper's triple)."""
    return 1.0 - abs(alpha - 1.2) - abs(beta - 1.1) - abs(gamma - 1.15)


class FakeHyperModel(keras_tuner.HyperModel):
    """Scores a triple without building anything; records every call."""

    def __init__(
        self,
        record_dir: Path | None = None,
        crash_on_call: int | None = None,
        seconds: float = 0.0,
        fail: dict | None = None,
    ):
        super().__init__()
        self.built, self.record_dir, self.crash_on_call, self.seconds = [], record_dir, crash_on_call, seconds
        self.fail = fail or {}  # triple -> the exception its trial raises

    def build(self, hp):
        triple = (hp.get("alpha"), hp.get("beta"), hp.get("gamma"))
        self.built.append(triple)
        if self.crash_on_call is not None and len(self.built) == self.crash_on_call:
            raise KeyboardInterrupt  # a Ctrl-C in the middle of a trial
        return triple

    def fit(self, hp, model, *args, **kwargs):
        time.sleep(self.seconds)
        alpha, beta, gamma = model
        if model in self.fail:
            raise self.fail[model]
        if self.record_dir is not None:
            tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "single")
            (self.record_dir / f"{alpha:g}-{beta:g}-{gamma:g}.{tuner_id}.{os.getpid()}").touch()
        return {
            "val_accuracy": fake_score(alpha, beta, gamma),
            "params": 1e6 * beta**2,
            "flops": 1e9 * alpha * beta**2 * gamma**2,
        }


if __name__ == "__main__":
    args = build_parser().parse_args(sys.argv[1:])
    record_dir = Path(args.directory) / "ran"
    record_dir.mkdir(parents=True, exist_ok=True)
    run_search(search_from_args(args), hypermodel=FakeHyperModel(record_dir, seconds=1.0))
