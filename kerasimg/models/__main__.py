"""``python -m kerasimg.models list [--json]``: the registry, with parameters counted from built models.

Beside what is counted here (parameters, GFLOPs) each row quotes the published ImageNet
top-1 with its source and a "pick this when" line (``catalogue.py``), and shows the input
scaling the model applies to 0-255 pixels (for ``hub:`` presets, their image converter's).
"""

from __future__ import annotations

import json
import sys

from kerasimg.cli import command_parser, run_cli


def describe(name: str) -> dict:
    """Registry facts plus the parameter count of the backbone built at its default size."""
    from kerasimg.models import get_backbone
    from kerasimg.models.catalogue import published

    spec = get_backbone(name)
    facts = published(spec.name)
    scaling = spec.pretrained_cfg()
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
        "input_scaling": {
            "where": "in the backbone" if scaling.in_model else "Preprocess layer",
            "scale": scaling.scale,
            "offset": scaling.offset,
            "mean": list(scaling.mean),
            "std": list(scaling.std),
            "channel_order": scaling.channel_order,
        },
        "imagenet_top1": facts.top1,
        "top1_source": facts.source or None,
        "pick_when": facts.pick_when or None,
    }


def main(argv: list[str] | None = None) -> int:
    p = command_parser("python -m kerasimg.models", __doc__)
    p.add_argument("command", choices=["list"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--backbone",
        action="append",
        help="list only these (repeatable); also how a hub:PRESET is shown, e.g. --backbone hub:DIR",
    )
    args = p.parse_args(argv)

    def run() -> int:
        from kerasimg.models import list_backbones

        rows = [describe(name) for name in (args.backbone or list_backbones())]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(
            f"{'name':<26} {'size':>5} {'parameters':>12} {'GFLOPs':>8} {'top-1':>6} {'scaling':<10} stages"
        )
        for r in rows:
            stages = r["stages"] if len(r["stages"]) <= 9 else [*r["stages"][:3], "...", r["stages"][-1]]
            top1 = f"{r['imagenet_top1']:.1f}" if r["imagenet_top1"] else "-"
            scaling = "in model" if r["input_scaling"]["where"] == "in the backbone" else r["preprocessing"]
            print(
                f"{r['name']:<26} {r['image_size']:>5} {r['parameters']:>12,} {r['gflops']:>8.2f} {top1:>6} "
                f"{scaling:<10} {' > '.join(stages)}"
            )
        print(
            "Backbones without a classification head, at their default size. GFLOPs per image as "
            "TensorFlow's profiler counts them (a multiply-add is 2 FLOPs). top-1: ImageNet, as published "
            "(--json names the source)."
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
