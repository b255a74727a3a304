"""When the test split is also the validation split: say so once, and mark the run wherever it shows.

``--val-from test`` (the ported experiments' protocol) picks the best epoch, the one saved
as ``model.keras``, by its accuracy on the test split. The test accuracy then reported has
seen the test set through that choice, so it is optimistic rather than a held-out estimate.
The driver prints :data:`NOTE` and records :data:`METRICS_KEY` in ``metrics.json``; the
compare table and the zoo's ``ZOO.md`` mark such runs with :data:`MARK` and explain it
with :func:`legend`.
"""

from __future__ import annotations

METRICS_KEY = "selected_on_test"
NOTE = (
    "Note: --val-from test picks the best epoch on the test split, so the test accuracy reported "
    "is optimistic (the ported protocol); use --val-from train for an unbiased figure."
)
MARK = "val = test"
_LEGEND = (
    "`{mark}`: the best epoch was chosen on the test split (`--val-from test`), so that test "
    "accuracy is optimistic, not a held-out estimate."
)


def validated_on_test(data) -> bool:
    """Whether a loaded ``LabelledData`` validates on its test split.

    ``--val-from test`` is ignored when the source has its own validation split, so the
    split objects, not the flag, decide.
    """
    return data.val is data.test


def selected_on_test(metrics: dict, arguments: dict | None = None) -> bool:
    """Whether a finished run's test accuracy is optimistic, from its ``metrics.json``.

    Runs written before the key existed fall back to their arguments' ``val_from``.
    """
    if METRICS_KEY in metrics:
        return bool(metrics[METRICS_KEY])
    return bool(arguments) and arguments.get("val_from") == "test"


def accuracy_cell(text: str, optimistic: bool) -> str:
    """``91.20%`` or ``91.20% (val = test)``."""
    return f"{text} ({MARK})" if optimistic else text


def legend(optimistic: bool) -> str:
    """The line under a table that explains :data:`MARK`, or nothing if no row carries it."""
    return "\n" + _LEGEND.format(mark=MARK) + "\n" if optimistic else ""
