"""``python -m kerasimg.export RUN_DIR [--name NAME] [--zoo saved_models/]``: a run into the zoo."""

from __future__ import annotations

import argparse
import sys

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import run_cli
from kerasimg.serving.zoo import DEFAULT_ZOO


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kerasimg.export", description=__doc__)
    p.add_argument("run_dir", help="a finished kerasimg.fit run directory")
    p.add_argument("--name", help="zoo model name (default: the run's backbone)")
    p.add_argument("--zoo", default=DEFAULT_ZOO, help="the zoo folder")
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="export a run stopped before its evaluation, marked as unevaluated in the zoo",
    )
    args = p.parse_args(argv)

    def run() -> int:
        from kerasimg.serving import export_run

        path = export_run(args.run_dir, args.name, args.zoo, allow_unfinished=args.allow_unfinished)
        print(f"Exported {path} (verified against the Keras model); index: {path.parent.parent / 'zoo.json'}")
        return 0

    return run_cli(run)


# ``kerasimg.export(...)`` is the API call even after this CLI module is imported (see kerasimg.api).
callable_module(__name__, api.export)

if __name__ == "__main__":
    sys.exit(main())
