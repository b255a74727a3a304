"""``kerasimg models list [--json] [--verify]``: the registered backbones, from static facts.

The registered backbones' rows (image size, parameters, GFLOPs, published top-1, scaling,
stages) are kept in ``kerasimg/models/facts.json`` beside the registry, so the list prints
without importing TensorFlow or building anything. ``--verify`` builds every listed backbone
again and names each row that differs from the file; ``--verify --json`` prints the rows the
file should hold. A ``hub:PRESET`` is always built.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kerasimg.cli import command_parser, run_cli

FACTS = Path(__file__).resolve().parent / "models" / "facts.json"
FOOTER = (
    "Backbones without a classification head, at their default size. GFLOPs per image as "
    "TensorFlow's profiler counts them (a multiply-add is 2 FLOPs). top-1: ImageNet, as published "
    "(--json names the source)."
)


def stored_facts() -> dict[str, dict]:
    """The rows of ``facts.json`` by name, in registration order."""
    return {row["name"]: row for row in json.loads(FACTS.read_text(encoding="utf-8"))}


def built_rows(names: list[str]) -> list[dict]:
    """Rows counted from backbones built now (imports TensorFlow)."""
    import kerasimg

    kerasimg.load_library()
    from kerasimg.models.__main__ import describe

    return [describe(name) for name in names]


def differences(rows: list[dict], stored: dict[str, dict]) -> list[str]:
    """One line per built row that differs from its stored fact."""
    lines = []
    for row in rows:
        fact = stored.get(row["name"])
        if fact is None:
            if not row["name"].startswith("hub:"):
                lines.append(f"{row['name']}: not in {FACTS.name}")
            continue
        for key in row:
            if row[key] != fact.get(key):
                lines.append(f"{row['name']}: {key} is {row[key]!r}, {FACTS.name} says {fact.get(key)!r}")
    return lines


def print_table(rows: list[dict]) -> None:
    print(f"{'name':<26} {'size':>5} {'parameters':>12} {'GFLOPs':>8} {'top-1':>6} {'scaling':<10} stages")
    for r in rows:
        stages = r["stages"] if len(r["stages"]) <= 9 else [*r["stages"][:3], "...", r["stages"][-1]]
        top1 = f"{r['imagenet_top1']:.1f}" if r["imagenet_top1"] else "-"
        scaling = "in model" if r["input_scaling"]["where"] == "in the backbone" else r["preprocessing"]
        print(
            f"{r['name']:<26} {r['image_size']:>5} {r['parameters']:>12,} {r['gflops']:>8.2f} {top1:>6} "
            f"{scaling:<10} {' > '.join(stages)}"
        )
    print(FOOTER)


def main(argv: list[str] | None = None) -> int:
    p = command_parser("python -m kerasimg.models", __doc__)
    p.add_argument("command", choices=["list"], help="the one subcommand: list the backbones")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--backbone",
        action="append",
        help="list only these (repeatable); also how a hub:PRESET is shown, e.g. --backbone hub:DIR",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="build each backbone and check the stored parameters, GFLOPs and sizes (slow: minutes)",
    )
    args = p.parse_args(argv)

    def run() -> int:
        stored = stored_facts()
        names = args.backbone or list(stored)
        if args.verify or any(name not in stored for name in names):
            rows = built_rows(names)  # an unknown name raises here, with the close ones
        else:
            rows = [stored[name] for name in names]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print_table(rows)
        stale = differences(rows, stored) if args.verify else []
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        if stale:
            print(
                f"{len(stale)} stored fact(s) differ from the built models: write "
                f"`kerasimg models list --verify --json` to {FACTS}.",
                file=sys.stderr,
            )
        return 1 if stale else 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
