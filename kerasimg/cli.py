"""What every ``python -m kerasimg.*`` entry point shares: clean errors and exit codes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

from kerasimg.errors import ArgumentError, UserError

EXIT_OS_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# "kerasimg export" while kerasimg.commands runs a command, so its usage line names what was typed.
invoked_as: str | None = None


def command_parser(prog: str, doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for a ``python -m kerasimg.*`` CLI: usage names the command as run, and the
    module docstring, its ``double backticks`` dropped, is the description."""
    description = re.sub(r"``(.+?)``", r"\1", doc or "", flags=re.S) or None
    return argparse.ArgumentParser(prog=invoked_as or prog, description=description, **kwargs)


def run_cli(main: Callable[[], int], interrupted_hint: str = "") -> int:
    """Run ``main``; a ``UserError`` becomes one line on stderr and exit code 2, Ctrl-C exit 130.

    An ``OSError`` (a full disk, a permission, a path that is a file) becomes one line
    naming the path and the cause, exit 1; every file kerasimg writes is written to a
    temporary name and renamed, so what was already written stays intact.
    ``KERASIMG_DEBUG=1`` shows the traceback instead.
    """
    try:
        return main()
    except UserError as error:
        message = error.for_cli() if isinstance(error, ArgumentError) else str(error)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        if os.environ.get("KERASIMG_DEBUG"):
            raise
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_OS_ERROR
    except KeyboardInterrupt:
        print(f"\nInterrupted. {interrupted_hint}".rstrip(), file=sys.stderr)
        return EXIT_INTERRUPTED


def describe_os_error(error: OSError) -> str:
    """``<cause>: <path>`` in one line, e.g. ``No space left on device: runs/x/model.keras``."""
    cause = error.strerror or str(error) or type(error).__name__
    paths = [str(p) for p in (error.filename, error.filename2) if p]
    hint = " Free some space and run the command again (fit: with --resume)." if error.errno == 28 else ""
    return f"{cause}: {' -> '.join(paths)}.{hint}" if paths else f"{cause}.{hint}"
