"""``python -m kerasimg.report RUN_DIR... [--out PAGE.html]``.

One run: rewrites its ``report.html`` (configuration, metrics, curves, confusion
matrix, per-class table, reliability diagram, highest-loss images, skipped files,
zoo exports). Several runs: one page with them side by side (``--out``, default
``report.html`` here). Self-contained: figures are embedded, nothing is fetched.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg.cli import command_parser, run_cli
from kerasimg.diagnose.report import write_report, write_run_report
from kerasimg.errors import UserError
from kerasimg.serving.zoo import DEFAULT_ZOO
from kerasimg.training.run import Run


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.report", __doc__)
    p.add_argument("runs", nargs="+", help="kerasimg.fit run directories")
    p.add_argument("--out", default=None, help="the page for several runs (default: report.html here)")
    p.add_argument("--zoo", default=DEFAULT_ZOO, help="the zoo whose exports of these runs are listed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        for folder in args.runs:
            if not Run(folder).exists:
                raise UserError(f"{folder} is not a kerasimg run directory (no config.json).")
        if len(args.runs) == 1 and args.out is None:
            path = write_run_report(args.runs[0], args.zoo)
        else:
            path = write_report(args.runs, args.out or "report.html", zoo=args.zoo)
        print(f"Wrote {path}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
