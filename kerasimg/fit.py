"""``python -m kerasimg.fit``: fine-tune a backbone on a folder, the Intel layout, TFDS or the demo set."""

from __future__ import annotations

import argparse
import sys

import keras

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.errors import UserError
from kerasimg.export import add_format_flags, print_formats
from kerasimg.serving.zoo import DEFAULT_ZOO
from kerasimg.settings import add_arguments
from kerasimg.training import multihost
from kerasimg.training.config import FitConfig
from kerasimg.training.run import Run


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.fit", __doc__)
    add_arguments(p, FitConfig)  # every training setting, from its FitConfig field
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
    """The settings the user typed (not defaulted): --resume refuses those that conflict, and they
    override a --config file's values."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        import kerasimg

        if args.config and args.resume:
            raise UserError(
                f"--config starts a new run from a settings file, and --resume continues {args.resume} "
                "with the settings saved in its config.json: give one of them (a larger --epochs beside "
                f"--resume extends the run). Received: --config {args.config} --resume {args.resume}"
            )
        given = {k: v for k, v in given_flags(argv).items() if k not in EXPORT_OPTIONS}
        if args.config and "strategy" not in given:  # the file's strategy, unless a flag overrides it
            args.strategy = FitConfig.from_file(args.config, **given).strategy
        if wants_multihost(args) and keras.backend.backend() != "jax":
            multihost.restart_under_jax("kerasimg.fit", sys.argv[1:] if argv is None else argv)
        if args.resume or args.config:  # the run's or the file's settings, with the flags typed on top
            arguments = given
            if args.resume:
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
        if hasattr(result, "runs"):  # --folds K: the summary of the K runs
            print(f"\n{len(result.runs)}-fold cross-validation, mean ± standard deviation over the folds:")
            for metric, mean in result.mean.items():
                print(f"  {metric:<24} {mean:.4f} ± {result.std[metric]:.4f}")
            print(f"Files: {result.run_dir}/ (folds.json, folds.csv, fold-1 .. fold-{len(result.runs)})")
            return 0
        per_class = result.metrics["per_class"]
        worst = min(per_class, key=lambda c: per_class[c]["f1"])
        if result.metrics.get("task") == "multilabel":
            m = result.metrics
            print(
                f"\nTest mAP {m['test_map']:.3f} on {m['test_examples']} images; "
                f"micro-F1 {m['test_micro_f1']:.3f}, macro-F1 {m['test_macro_f1']:.3f}, every class right "
                f"for {m['test_accuracy']:.1%} (thresholds chosen on validation); best epoch "
                f"{result.best_epoch}; weakest class {worst} (F1 {per_class[worst]['f1']:.2f}); "
                f"{result.seconds:.0f} s.\n"
                f"Files: {result.run_dir}/ (report.html, model.keras, metrics.json, predictions.csv, "
                "precision_recall.png, curves.png, history.csv)"
            )
        else:
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
