"""What every ``python -m kerasimg.*`` entry point shares: clean errors and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from kerasimg.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(main: Callable[[], int], interrupted_hint: str = "") -> int:
    """Run ``main``; a ``UserError`` becomes one line on stderr and exit code 2, Ctrl-C exit 130."""
    try:
        return main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\nInterrupted. {interrupted_hint}".rstrip(), file=sys.stderr)
        return EXIT_INTERRUPTED
