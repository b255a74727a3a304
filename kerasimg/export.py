"""``python -m kerasimg.export RUN_DIR [--name NAME] [--format savedmodel,onnx,...]``: a run into the zoo."""

from __future__ import annotations

import argparse
import sys

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.serving.formats import (
    DEFAULT_CALIBRATION_IMAGES,
    FORMATS,
    MIN_INT8_CHECK_IMAGES,
    SAVEDMODEL,
    SERVING_PRECISIONS,
)
from kerasimg.serving.zoo import DEFAULT_ZOO
from kerasimg.training.recipe import TTA_MODES


def main(argv: list[str] | None = None) -> int:
    p = command_parser("python -m kerasimg.export", __doc__)
    p.add_argument("run_dir", help="a finished kerasimg.fit run directory")
    p.add_argument("--name", help="zoo model name (default: the run's backbone)")
    p.add_argument("--zoo", default=DEFAULT_ZOO, help="the zoo folder")
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="export a run stopped before its evaluation, marked as unevaluated in the zoo",
    )
    add_format_flags(p)
    p.add_argument(
        "--tta",
        default="none",
        choices=TTA_MODES,
        help="flip: the SavedModel's signatures average each image's and its mirror's probabilities "
        "(twice the cost of a request)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=SERVING_PRECISIONS,
        help="what the SavedModel and the openvino file compute in; auto: the SavedModel in float32 (it "
        "is served on CPUs this export cannot see), the openvino file in bfloat16 where this CPU has it "
        "and the top-1 agrees with float32 on 99.5%% of the test images; bfloat16: both, on a CPU with it",
    )
    args = p.parse_args(argv)

    def run() -> int:
        path = api.export(
            args.run_dir,
            args.name,
            args.zoo,
            allow_unfinished=args.allow_unfinished,
            format=args.format,
            calibration_images=args.calibration_images,
            tta=args.tta,
            precision=args.precision,
        )
        print(f"Exported {path} (verified against the Keras model); index: {path.parent.parent / 'zoo.json'}")
        print_formats(path)
        return 0

    return run_cli(run)


def add_format_flags(p: argparse.ArgumentParser) -> None:
    """``--format`` and ``--calibration-images``, shared with ``fit --export``."""
    p.add_argument(
        "--format",
        default=SAVEDMODEL,
        help=f"comma-separated, from {','.join(FORMATS)}; the SavedModel is always written and the "
        "others go beside it in the version folder, each verified against the Keras model",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help="training images that calibrate litert-int8",
    )


def print_formats(path) -> None:
    """One line per exported file: size, parity or int8 agreement (from the zoo's index)."""
    from kerasimg.serving.zoo import Zoo

    entry = next(
        (e for e in Zoo(path.parent.parent).entries() if e["path"] == str(path)),
        {},
    )
    for name, facts in entry.get("formats", {}).items():
        line = f"  {name:<12} {facts['bytes'] / 1e6:8.2f} MB"
        if "top1_agreement" in facts:
            count = facts["agreement_images"]
            line += (
                f"  top-1 agrees with the float model on {facts['top1_agreement']:.2%} of {count} test images"
            )
            if "int8_accuracy" in facts:
                line += f"; accuracy {facts['int8_accuracy']:.2%} (float {facts['float_accuracy']:.2%})"
            if count < MIN_INT8_CHECK_IMAGES:
                line += f" (the whole test split: fewer than {MIN_INT8_CHECK_IMAGES})"
        elif "max_abs_diff" in facts:
            line += f"  max |prob diff| {facts['max_abs_diff']:.1e} on {facts['checked_images']} images"
        if "serves" in facts:
            line += f"; serves in {facts['serves']}"
            if "bfloat16" in facts:
                bf16 = facts["bfloat16"]
                line += (
                    f" (bfloat16 top-1 agrees on {bf16['top1_agreement']:.2%} of {bf16['agreement_images']} "
                    "test images)"
                )
        print(line)


# ``kerasimg.export(...)`` is the API call even after this CLI module is imported (see kerasimg.api).
callable_module(__name__, api.export)

if __name__ == "__main__":
    sys.exit(main())
