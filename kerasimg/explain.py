"""``python -m kerasimg.explain RUN_DIR_OR_ZOO_MODEL IMAGES... [--class NAME] [--out DIR]``.

Writes a Grad-CAM overlay per image: where the model found the evidence for the
predicted class (or ``--class``). ConvNets are explained on their last feature
map, ViT on the patch tokens entering its last encoder layer (the backbone
registry says which). A zoo model is explained through the run it was exported from.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg.cli import command_parser, run_cli
from kerasimg.diagnose.explain import explain_images
from kerasimg.serving.zoo import DEFAULT_ZOO


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.explain", __doc__)
    p.add_argument(
        "model", help="a run directory, or a zoo model (NAME[/VERSION] or saved_models/NAME/VERSION)"
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument(
        "--class", dest="class_name", default=None, help="explain this class (default: the predicted)"
    )
    p.add_argument("--out", default=None, help="folder for the overlays (default: RUN_DIR/explain)")
    p.add_argument("--zoo", default=DEFAULT_ZOO, help="the zoo that a model NAME is looked up in")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        results = explain_images(
            args.model, args.images, class_name=args.class_name, out=args.out, zoo=args.zoo
        )
        for r in results:
            if "error" in r:
                print(f"{r['file']}: UNREADABLE ({r['error']})")
            else:
                print(
                    f"{r['file']}: predicted {r['predicted']} {r['probability']:.1%}; "
                    f"Grad-CAM for {r['explained']} -> {r['overlay']}"
                )
        return 1 if results and all("error" in r for r in results) else 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
