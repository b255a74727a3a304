"""``python -m kerasimg.compare --plan seed``: run a plan of fine-tuning experiments, one table.

Writes <out>/results.md, results.csv and curves.png (every experiment's validation
curves overlaid), one run directory per experiment, and with ``--export`` each best
model to the zoo. Rerunning the same command skips finished experiments and resumes
an interrupted one. ``--quick`` applies the plan's CPU-demo settings (small images,
few epochs, the built-in data, random weights).
"""

from __future__ import annotations

import argparse
import sys

from kerasimg.cli import command_parser, run_cli
from kerasimg.serving.zoo import DEFAULT_ZOO
from kerasimg.training.precision import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.compare", __doc__)
    p.add_argument("--plan", default="seed", help="a shipped plan (kerasimg/plans/NAME.toml) or a .toml path")
    p.add_argument(
        "--data", help="scenes[:TRAIN,TEST], a folder, the Intel layout or tfds:NAME (default: the plan's)"
    )
    p.add_argument("--quick", action="store_true", help="the plan's CPU-sized demo settings")
    p.add_argument("--out", help="output folder (default runs/compare-<plan>[-quick])")
    p.add_argument(
        "--precision", choices=PRECISIONS, help="for every experiment (default: the plan's, float32)"
    )
    p.add_argument("--export", action="store_true", help="export every experiment's best model to the zoo")
    p.add_argument("--zoo", default=DEFAULT_ZOO)
    p.add_argument("--list", action="store_true", help="print the plan's experiments and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from kerasimg.experiments.compare import run_plan
        from kerasimg.experiments.plans import load_plan

        plan = load_plan(args.plan, quick=args.quick)
        if args.list:
            for e in plan.experiments:
                print(f"{e.name:<28} {e.settings}")
            return 0
        out = args.out or f"runs/compare-{plan.name}{'-quick' if args.quick else ''}"
        rows = run_plan(plan, out, data=args.data, precision=args.precision, export=args.export, zoo=args.zoo)
        print(f"\n{len(rows)} experiments. Results: {out}/results.md, results.csv, curves.png, report.html\n")
        print(open(f"{out}/results.md", encoding="utf-8").read())
        return 0

    return run_cli(run, "Rerun the same command to resume: finished experiments are skipped.")


if __name__ == "__main__":
    sys.exit(main())
