"""``python -m kerasimg COMMAND ...``: the same as the ``kerasimg`` console script."""

import sys

from kerasimg.commands import main

if __name__ == "__main__":
    sys.exit(main())
