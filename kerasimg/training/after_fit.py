"""What a run does once its last phase ends: evaluate the best model and write the report.

Training sits below diagnosis, so it does not import it: the diagnosing layer
registers itself here (``kerasimg.diagnose.evaluation`` does so on import, and
``import kerasimg`` imports it), and the driver calls whatever is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import keras

from kerasimg.data import LabelledData
from kerasimg.training.run import Run


@dataclass(frozen=True)
class Finished:
    """A trained run as the evaluation sees it."""

    model: keras.Model
    data: LabelledData
    run: Run
    title: str
    image_size: int
    batch_size: int
    # Grad-CAM on the mistakes for this backbone; None: no heat maps.
    backbone: str | None
    tta: str
    log: Callable = print
    # The processes that share the predictions (a multihost run's cluster); None: this one alone.
    processes: object = None


class AfterFit(Protocol):
    def evaluate(self, finished: Finished) -> dict:
        """The test split's metrics, with its predictions and plots written into the run."""

    def report(self, run: Run) -> None:
        """The run's ``report.html``, once its ``metrics.json`` is written."""


_steps: list[AfterFit] = []


def register(step: AfterFit) -> None:
    """Make ``step`` the evaluation every run ends with (the last one registered wins)."""
    _steps.append(step)


def step() -> AfterFit:
    if not _steps:
        raise RuntimeError(
            "No after-fit evaluation is registered: import kerasimg (or kerasimg.diagnose.evaluation) "
            "before training."
        )
    return _steps[-1]
