"""Experiment trackers: where a run's parameters, per-epoch metrics and files are logged besides its folder.

One registry (``registry.py``), one file per tracker: ``none`` logs nothing, ``mlflow`` logs to MLflow's
tracking store, ``wandb`` to Weights & Biases.
"""

from kerasimg.training.trackers.registry import (  # noqa: I001  (the registry must exist before trackers register)
    TRACKERS,
    Tracker,
    open_tracker,
    register_tracker,
)
from kerasimg.training.trackers import mlflow_tracker, wandb_tracker  # noqa: F401  (they register)

__all__ = ["TRACKERS", "Tracker", "open_tracker", "register_tracker"]
