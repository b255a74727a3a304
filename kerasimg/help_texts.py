"""``kerasimg COMMAND --help`` at once: each command's help, rendered from its parser ahead of time.

Building a command's parser imports TensorFlow (its settings are checked against the model
registry and the training code), about 10 s on 2 cores, to print text that only changes when
the code does. So ``python -m kerasimg.docs`` writes each command's help into
``kerasimg/help/COMMAND.txt``, the console script prints that file for ``kerasimg COMMAND
--help``, and a test compares every file with what the live parser prints, so the stored text
cannot go stale. ``python -m kerasimg.COMMAND --help`` still builds the parser.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from pathlib import Path

HELP_DIR = Path(__file__).resolve().parent / "help"
# Columns the stored help is wrapped to (argparse reads COLUMNS), whatever terminal renders it.
WIDTH = 100


def stored_help(command: str) -> str | None:
    """The help text stored for ``command``, or None when there is none (the parser is built then)."""
    try:
        return (HELP_DIR / f"{command}.txt").read_text(encoding="utf-8")
    except OSError:
        return None


def render_help(command: str, module: str) -> str:
    """What ``kerasimg COMMAND --help`` prints, from ``module``'s own parser, at ``WIDTH`` columns."""
    from kerasimg import cli

    printed = io.StringIO()
    with _columns(WIDTH), contextlib.redirect_stdout(printed):
        cli.invoked_as = f"kerasimg {command}"
        try:
            importlib.import_module(module).main(["--help"])
        except SystemExit:
            pass  # argparse exits after printing the help
        finally:
            cli.invoked_as = None
    return printed.getvalue()


@contextlib.contextmanager
def _columns(width: int):
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
