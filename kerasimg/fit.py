"""``python -m kerasimg.fit``: fine-tune a backbone on a folder, the Intel layout, TFDS or the demo set."""

from __future__ import annotations

import argparse
import sys

import keras

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.data.augment import PRESETS
from kerasimg.data.sources import VAL_FROM, VERIFY
from kerasimg.errors import UserError
from kerasimg.export import add_format_flags, print_formats
from kerasimg.models.classifier import HEADS
from kerasimg.serving.zoo import DEFAULT_ZOO
from kerasimg.training import multihost
from kerasimg.training.config import FitConfig
from kerasimg.training.distribution import STRATEGIES
from kerasimg.training.precision import PRECISIONS
from kerasimg.training.recipe import LR_SCHEDULES, OPTIMIZERS, RECIPES, TTA_MODES
from kerasimg.training.run import Run

_DEFAULTS = FitConfig()


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.fit", __doc__)
    p.add_argument(
        "--backbone",
        default=_DEFAULTS.backbone,
        help="a registered backbone (python -m kerasimg.models list)",
    )
    p.add_argument(
        "--data",
        default=_DEFAULTS.data,
        help="scenes[:TRAIN,TEST] (built-in demo), a folder, the Intel layout, or tfds:NAME",
    )
    p.add_argument(
        "--weights",
        default=_DEFAULTS.weights,
        help="imagenet (fetched by Keras into $KERAS_HOME/models) | none | PATH to a weights file",
    )
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="epochs in all, over every phase")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="Adam learning rate")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's own size")
    p.add_argument(
        "--schedule",
        default=_DEFAULTS.schedule,
        help="linear-probe | last-block | gradual | full | probe-then-last:N,M | a spec such as "
        "'0:head,5:conv5,8:conv4' (epoch:deepest unfrozen stage); with --weights none, "
        "linear-probe becomes full",
    )
    p.add_argument(
        "--unfreeze-every",
        type=int,
        default=_DEFAULTS.unfreeze_every,
        help="epochs between unfreezing steps of --schedule gradual",
    )
    p.add_argument(
        "--finetune-lr",
        type=float,
        default=None,
        help="learning rate of phases that train backbone layers (default: lr/10 with "
        "pretrained weights, lr without)",
    )
    p.add_argument(
        "--train-bn",
        action="store_true",
        help="let BatchNorm layers of unfrozen stages train (default: inference mode; on with "
        "--weights none)",
    )
    p.add_argument(
        "--no-feature-cache",
        dest="feature_cache",
        action="store_false",
        help="train partly or wholly frozen phases on images instead of cached features or "
        "stage-boundary activations",
    )
    p.add_argument(
        "--no-fold-bn",
        dest="fold_bn",
        action="store_false",
        help="under mixed_bfloat16, compute frozen BatchNorm as its own layer instead of folding it "
        "into the convolution before it (the saved model is the same either way)",
    )
    p.add_argument(
        "--cache-views",
        type=int,
        default=None,
        metavar="K",
        help="with augmentation beyond flips (not mixup/cutmix), cache K augmented views per training "
        "image and draw one per epoch (default: such phases train on images)",
    )
    p.add_argument(
        "--recipe",
        default=_DEFAULTS.recipe,
        choices=tuple(RECIPES),
        help="seed: the ported recipe (flip, Adam, constant lr); modern: light augmentation, label "
        "smoothing 0.1, AdamW (weight decay 0.05), 1 warm-up epoch, cosine decay, flip TTA. The flags "
        "below override it",
    )
    p.add_argument(
        "--augment",
        default=None,
        help=f"a preset ({', '.join(PRESETS)}) or a list such as "
        "rrc,flip,randaugment:2:9,mixup:0.2,cutmix:1.0,erasing:0.25 (default: the recipe's)",
    )
    p.add_argument("--label-smoothing", type=float, default=None, help="0 to 1 (default: the recipe's)")
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help="default: the recipe's")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="decoupled weight decay (adamw, sgd), never on biases, norms and embeddings",
    )
    p.add_argument(
        "--warmup-epochs", type=float, default=None, help="linear warm-up at the start of every phase"
    )
    p.add_argument(
        "--lr-schedule",
        default=None,
        choices=LR_SCHEDULES,
        help="per phase, after the warm-up (the lr of every epoch is history.csv's lr column)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=None,
        help="EMA decay of the weights (e.g. 0.999); the EMA weights are validated, saved and exported",
    )
    p.add_argument("--grad-accum", type=int, default=None, help="accumulate gradients over N batches")
    p.add_argument(
        "--early-stop",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="end a phase after PATIENCE epochs without a better val accuracy; the next phase still runs",
    )
    p.add_argument(
        "--class-weight",
        default=None,
        help="none, auto (inverse class frequency, normalised) or a JSON file {class: weight}",
    )
    p.add_argument(
        "--tta",
        default=None,
        choices=TTA_MODES,
        help="flip: evaluate on the mean of each test image's and its mirror's probabilities",
    )
    p.add_argument(
        "--layer-decay",
        type=float,
        default=None,
        metavar="F",
        help="each backbone stage trains at F^k of the head's rate, k stages below it (default: the "
        "recipe's, 1)",
    )
    p.add_argument(
        "--dropout", type=float, default=_DEFAULTS.dropout, help="dropout rate before the output layer"
    )
    p.add_argument(
        "--head",
        default=_DEFAULTS.head,
        choices=HEADS,
        help="linear, or mlp (Dense-GELU-Dropout-Dense, the ported ViT head)",
    )
    p.add_argument(
        "--val-split",
        type=float,
        default=_DEFAULTS.val_split,
        help="fraction of each class carved from train for validation",
    )
    p.add_argument(
        "--val-from",
        default=_DEFAULTS.val_from,
        choices=VAL_FROM,
        help="'test' validates on the test split, as the ported work did",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=_DEFAULTS.seed,
        help="seeds splits, shuffling, augmentation and initialisation",
    )
    p.add_argument(
        "--precision",
        default=_DEFAULTS.precision,
        choices=PRECISIONS,
        help="auto: mixed_bfloat16 on CPUs with AMX/AVX512-BF16 and GPUs of compute capability 8+, "
        "where it was measured faster; float32 otherwise",
    )
    p.add_argument(
        "--strategy",
        default=_DEFAULTS.strategy,
        choices=STRATEGIES,
        help="mirrored: MirroredStrategy over all local GPUs (--batch-size per replica); auto: when >1 GPU; "
        "multihost: Keras's DataParallel on JAX over every device of every process named by "
        "KERAS_DISTRIBUTION_* (README: Several machines)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=_DEFAULTS.connect_timeout,
        metavar="SECONDS",
        help="multihost: how long a process waits for the others to join before it stops with one line",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=_DEFAULTS.max_pixels,
        help="skip images whose header claims more pixels than this (decompression bombs); "
        "the default is Pillow's limit, so large phone photos pass",
    )
    p.add_argument(
        "--verify",
        default=_DEFAULTS.verify,
        choices=VERIFY,
        help="pipeline: skip unreadable images as training meets them, so it starts at once; "
        "full: check every file before training (verdicts are kept)",
    )
    p.add_argument("--exclude", default=None, metavar="AUDIT_CSV", help="leave out files an audit flagged")
    p.add_argument(
        "--exclude-issues",
        default=_DEFAULTS.exclude_issues,
        help="issues --exclude drops: label, duplicate, outlier",
    )
    p.add_argument("--out", default=None, help="run directory (default runs/<date>-<backbone>-<data>/)")
    p.add_argument("--export", metavar="NAME", help="export the best model to the zoo under NAME when done")
    p.add_argument("--zoo", default=DEFAULT_ZOO, help="the zoo folder for --export")
    add_format_flags(p)  # --format, --calibration-images: how --export writes
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue an interrupted run with its saved configuration; a larger --epochs extends "
        "an interrupted or finished run, other flags that differ from the run are refused",
    )
    return p


# Flags that say how to resume or export, not how to train: kerasimg.fit's own keywords.
EXPORT_OPTIONS = ("resume", "export", "zoo", "format", "calibration_images")


def given_flags(argv: list[str] | None) -> dict:
    """The settings the user typed (not defaulted), so --resume can refuse the ones that conflict."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        import kerasimg

        if wants_multihost(args) and keras.backend.backend() != "jax":
            multihost.restart_under_jax("kerasimg.fit", sys.argv[1:] if argv is None else argv)
        if args.resume:
            arguments = {k: v for k, v in given_flags(argv).items() if k not in EXPORT_OPTIONS}
            print(f"Resuming {args.resume}")
        else:
            arguments = {k: v for k, v in vars(args).items() if k not in EXPORT_OPTIONS}
        result = kerasimg.fit(
            resume=args.resume,
            export=args.export,
            zoo=args.zoo,
            format=args.format,
            calibration_images=args.calibration_images,
            **arguments,
        )
        if not multihost.writes_run():
            print(f"\nProcess {multihost.start().process_id} done; process 0 wrote {result.run_dir}.")
            return 0
        per_class = result.metrics["per_class"]
        worst = min(per_class, key=lambda c: per_class[c]["f1"])
        print(
            f"\nTest accuracy {result.test_accuracy:.2%} on {result.metrics['test_examples']} images "
            f"(loss {result.test_loss:.3f}); best epoch {result.best_epoch}; "
            f"weakest class {worst} (F1 {per_class[worst]['f1']:.2f}); {result.seconds:.0f} s.\n"
            + (
                f"With {result.metrics['tta']['mode']} test-time augmentation: "
                f"{result.metrics['tta']['test_accuracy']:.2%} (not applied by the exported model).\n"
                if "tta" in result.metrics
                else ""
            )
            + f"Balanced accuracy {result.metrics['test_balanced_accuracy']:.2%}, macro-F1 "
            f"{result.metrics['test_macro_f1']:.3f}, ECE {result.metrics['test_ece']:.3f}.\n"
            f"Files: {result.run_dir}/ (report.html, model.keras, metrics.json, predictions.csv, "
            "mistakes.png, curves.png, confusion.png, reliability.png, history.csv)"
        )
        if result.exported:
            print(f"Exported to {result.exported}")
            print_formats(result.exported)
        return 0

    return run_cli(run, "Resume with: python -m kerasimg.fit --resume RUN_DIR (printed above).")


def wants_multihost(args: argparse.Namespace) -> bool:
    """``--strategy multihost``, or a resumed run that used it (or whose launcher set Keras's variables)."""
    if args.strategy == "multihost":
        return True
    if not args.resume:
        return False
    if multihost.requested():
        return True
    try:
        return Run(args.resume).read_config()["arguments"].get("strategy") == "multihost"
    except UserError:
        return False  # kerasimg.fit explains what is wrong with the run


# ``kerasimg.fit(...)`` is the API call even after this CLI module is imported (see kerasimg.api).
callable_module(__name__, api.fit)

if __name__ == "__main__":
    sys.exit(main())
