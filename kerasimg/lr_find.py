"""``python -m kerasimg.lr_find --backbone B --data D``: the learning-rate range test, and a rate to use.

Trains the model ``fit`` would start from for ``--steps`` batches while the rate grows
exponentially from ``--min-lr`` to ``--max-lr``, stops once the loss explodes, and prints the
rate ``--rule`` reads off the smoothed loss (valley: half-way down its longest descent;
steepest: where it falls fastest; minimum: a tenth of the rate at its lowest). ``lr_find.png``
shows the curve; the weights are not kept.
Then: ``python -m kerasimg.fit ... --lr RATE``.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.training.lr_finder import DEFAULT_RULE, RULES
from kerasimg.training.recipe import RECIPES


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.lr_find", __doc__)
    p.add_argument("--data", default="scenes", help="as fit's: scenes[:TRAIN,TEST], a folder, or tfds:NAME")
    p.add_argument(
        "--backbone", default="resnet50", help="a registered backbone (python -m kerasimg.models list)"
    )
    p.add_argument(
        "--weights",
        default="imagenet",
        help="as fit's; pretrained weights ramp the head only, none everything",
    )
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's own")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--recipe", default="seed", choices=list(RECIPES), help="optimizer, loss, augmentation: as fit's"
    )
    p.add_argument("--min-lr", type=float, default=1e-7, help="the ramp's first rate")
    p.add_argument("--max-lr", type=float, default=1.0, help="the ramp's last rate")
    p.add_argument("--steps", type=int, default=100, help="batches in the ramp (at least 10)")
    p.add_argument("--rule", default=DEFAULT_RULE, choices=RULES, help="how the suggested rate is read")
    p.add_argument("--out", default="lr_find", help="folder for lr_find.png, .csv and .json")
    p.add_argument("--seed", type=int, default=0, help="as fit's: the splits and the initial weights")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        finding = api.lr_find(**vars(args))
        ended = "the loss exploded" if finding.diverged else "the ramp ended"
        print(
            f"Suggested learning rate: {finding.suggestion:.3g} ({finding.rule} rule, from "
            f"{len(finding.rates)} steps before {ended}). Curve: {args.out}/lr_find.png"
        )
        print(
            f"Train with it: python -m kerasimg.fit --backbone {args.backbone} "
            f"--lr {finding.suggestion:.3g} ..."
        )
        return 0

    return run_cli(run)


callable_module(__name__, api.lr_find)

if __name__ == "__main__":
    sys.exit(main())
