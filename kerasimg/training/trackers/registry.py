"""The tracker registry: ``@register_tracker`` names a factory after its function, as backbones are named.

A factory ``name(run, params, resume)`` returns a ``Tracker`` for one run. A tracker is opened before
training starts, so a missing package or an unreachable server stops the run before any epoch. Only the
process that writes the run (process 0 of a multihost run) opens a real tracker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras

from kerasimg.errors import UserError

TRACKERS: dict[str, Callable] = {}


def register_tracker(factory: Callable) -> Callable:
    """Register ``factory(run, params, resume)`` as the tracker named like the function."""
    if factory.__name__ in TRACKERS:
        raise ValueError(f"A tracker named {factory.__name__!r} is already registered.")
    TRACKERS[factory.__name__] = factory
    return factory


class Tracker:
    """What a run tells its tracker; this base logs nothing (``--tracker none``)."""

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return []

    def finish(self, metrics: dict, files: list[Path]) -> None:
        """Log the final ``metrics`` and the run's ``files`` that exist, then close the run."""


@register_tracker
def none(run, params: dict, resume: bool) -> Tracker:  # noqa: ARG001 - every factory takes the same arguments
    return Tracker()


def import_package(tracker: str):
    """The Python package a tracker is named after, or one line saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(tracker)
    except ImportError:
        raise UserError(
            f"--tracker {tracker} needs the {tracker} package; install it with "
            f"pip install 'kerasimg[{tracker}]'."
        ) from None


def open_tracker(name: str, run, params: dict, *, resume: bool, writes: bool = True) -> Tracker:
    """The tracker ``name`` for ``run`` (a ``Run``), checked and connected before training starts."""
    if name not in TRACKERS:
        raise UserError(f"Unknown tracker; expected one of {', '.join(TRACKERS)}. Received: tracker={name!r}")
    if not writes:  # processes 1.. of a multihost run: process 0 alone logs
        return Tracker()
    return TRACKERS[name](run, params, resume)
