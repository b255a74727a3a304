"""``python -m kerasimg.evaluate RUN_DIR [--data DATA] [--split test|val|train] [--explain]``.

Predicts a split with the run's best model and writes its per-image table
(``predictions.csv``, or ``predictions-<split>.csv``) and its highest-loss images
(``mistakes.png``) into the run directory. ``--split train`` ranks the training
files by loss: the top rows are the likeliest mislabelled. ``--data`` evaluates
another dataset with the same classes.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg.cli import command_parser, run_cli
from kerasimg.diagnose.evaluate_run import SPLITS, evaluate_run


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.evaluate", __doc__)
    p.add_argument("run_dir", help="a finished (or stopped) kerasimg.fit run directory")
    p.add_argument("--data", default=None, help="another dataset with the run's classes (default: the run's)")
    p.add_argument("--split", default="test", choices=SPLITS, help="which split to predict")
    p.add_argument("--batch-size", type=int, default=32, help="images per prediction step")
    p.add_argument("--mistakes", type=int, default=12, help="how many highest-loss images mistakes.png shows")
    p.add_argument("--explain", action="store_true", help="overlay Grad-CAM on the highest-loss images")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        m = evaluate_run(
            args.run_dir,
            data=args.data,
            split=args.split,
            batch_size=args.batch_size,
            explain=args.explain,
            mistakes=args.mistakes,
        )
        s = args.split
        print(
            f"{s}: accuracy {m[f'{s}_accuracy']:.2%} on {m[f'{s}_examples']} images "
            f"(loss {m[f'{s}_loss']:.3f}), "
            f"top-{m['top_k']} {m[f'{s}_top_k_accuracy']:.2%}, balanced {m[f'{s}_balanced_accuracy']:.2%}, "
            f"macro-F1 {m[f'{s}_macro_f1']:.3f}, ECE {m[f'{s}_ece']:.3f}.\n"
            f"Files: {m['predictions_path']} (sort it by loss: the worst first), {m['mistakes_path']}"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
