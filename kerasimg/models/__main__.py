"""``python -m kerasimg.models list [--json] [--verify]``: the registry, with parameters and GFLOPs.

The rows of the registered backbones are static facts in ``facts.json`` beside the registry,
so listing them builds nothing; ``--verify`` builds each backbone again, counts its parameters
and FLOPs and names any row that differs from the file (``--verify --json`` prints the rows the
file should hold). Beside what is counted each row quotes the published ImageNet top-1 with its
source and a "pick this when" line (``catalogue.py``), and shows the input scaling the model
applies to 0-255 pixels (for ``hub:`` presets, their image converter's, always built).
"""

from __future__ import annotations

import sys

from kerasimg.model_list import main


def describe(name: str) -> dict:
    """Registry facts plus the parameter and FLOP counts of the backbone built at its default size."""
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


__all__ = ["describe", "main"]

if __name__ == "__main__":
    sys.exit(main())
