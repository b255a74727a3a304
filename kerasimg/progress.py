"""Progress on long work: Keras's live bar on a terminal, one line when it ends in a log file.

A bar redrawn with ANSI codes into a file, CI log or notebook capture is a screen of escape
codes; Keras's ``verbose=2`` prints the finished line only.
"""

from __future__ import annotations

import sys


def progress_verbosity() -> int:
    """Keras's progress bar on a terminal; one line per epoch in a log file, CI or a notebook capture."""
    return 1 if sys.stdout.isatty() else 2


def progress_bar(total: int, unit: str):
    """A ``keras.utils.Progbar`` over ``total`` ``unit``s, live only on a terminal."""
    import keras

    return keras.utils.Progbar(total, unit_name=unit, verbose=progress_verbosity())
