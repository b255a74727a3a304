"""``python -m kerasimg.models list [--json]``: the registry, with parameters counted from built models."""

from __future__ import annotations

import argparse
import json
import sys

from kerasimg.cli import run_cli


def describe(name: str) -> dict:
    """Registry facts plus the parameter count of the backbone built at its default size."""
    from kerasimg.models import get_backbone

    spec = get_backbone(name)
    size = spec.image_size
    model = spec.build(input_shape=(size, size, 3), weights=None)
    from kerasimg.models.flops import count_flops

    return {
        "name": spec.name,
        "family": spec.family,
        "image_size": size,
        "parameters": int(model.count_params()),
        "gflops": round(count_flops(model) / 1e9, 3),
        "feature_dim": spec.feature_dim,
        "preprocessing": spec.preprocessing,
        "output": spec.output,
        "pooling": spec.pooling
        if isinstance(spec.pooling, str)
        else getattr(spec.pooling, "__name__", "custom"),
        "weights_sources": [source.name for source in spec.weights_sources],
        "stages": spec.stage_names,
        "pretrained": spec.pretrained.origin if spec.pretrained else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kerasimg.models", description=__doc__)
    p.add_argument("command", choices=["list"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)

    def run() -> int:
        from kerasimg.models import list_backbones

        rows = [describe(name) for name in list_backbones()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'name':<26} {'size':>5} {'parameters':>12} {'GFLOPs':>8} {'preprocessing':<14} stages")
        for r in rows:
            stages = r["stages"] if len(r["stages"]) <= 9 else [*r["stages"][:3], "...", r["stages"][-1]]
            print(
                f"{r['name']:<26} {r['image_size']:>5} {r['parameters']:>12,} {r['gflops']:>8.2f} "
                f"{r['preprocessing']:<14} {' > '.join(stages)}"
            )
        print(
            "Backbones without a classification head, at their default size. GFLOPs per image as "
            "TensorFlow's profiler counts them (a multiply-add is 2 FLOPs)."
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
