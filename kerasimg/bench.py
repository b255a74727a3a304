"""``python -m kerasimg.bench``: images/s per backbone and mode on random in-memory data."""

from __future__ import annotations

import argparse
import sys

from kerasimg.cli import run_cli
from kerasimg.files import write_json
from kerasimg.training.throughput import MODES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerasimg.bench", description=__doc__)
    p.add_argument("--backbone", action="append", required=True, help="repeat to compare backbones")
    p.add_argument("--mode", action="append", choices=MODES, help="repeatable; default train")
    p.add_argument("--image-size", type=int, default=None, help="default: each backbone's own size")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    return p


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'backbone':<22} {'mode':<7} {'size':>5} {'batch':>5} {'precision':<16} "
        f"{'images/s':>9} {'step s':>8} {'params':>12}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['backbone']:<22} {r['mode']:<7} {r['image_size']:>5} {r['batch_size']:>5} "
            f"{r['precision']:<16} {r['images_per_sec']:>9.2f} {r['step_seconds_median']:>8.3f} "
            f"{r['params']:>12,}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from kerasimg.training.throughput import measure

        rows = []
        for backbone in args.backbone:
            for mode in args.mode or ["train"]:
                print(f"Measuring {backbone} ({mode})...", flush=True)
                rows.append(
                    measure(backbone, mode, args.image_size, args.batch_size, args.steps, args.warmup)
                )
        print(format_table(rows))
        if args.json:
            write_json(args.json, rows)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
