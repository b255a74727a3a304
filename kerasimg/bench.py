"""``python -m kerasimg.bench``: images/s per backbone and mode on random in-memory data.

Beside images/s: the GFLOP/s achieved (a train step counted as 3 forward passes) and that as
a fraction of a large matmul measured in the same run and precision, the machine's ceiling.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg.benchmarks.throughput import MODES
from kerasimg.cli import command_parser, run_cli
from kerasimg.files import write_json
from kerasimg.serving.formats import FORMATS, SAVEDMODEL
from kerasimg.training.precision import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.bench", __doc__)
    p.add_argument("--backbone", action="append", required=True, help="repeat to compare backbones")
    p.add_argument("--mode", action="append", choices=MODES, help="repeatable; default train")
    p.add_argument("--image-size", type=int, default=None, help="default: each backbone's own size")
    p.add_argument(
        "--batch-size", type=int, action="append", help="repeatable (e.g. 1 and 32 in one run); default 32"
    )
    p.add_argument(
        "--format",
        action="append",
        choices=list(FORMATS),
        help="repeatable; what --mode serve times, each file in its own runtime (default savedmodel)",
    )
    p.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument(
        "--precision",
        action="append",
        choices=PRECISIONS,
        help="repeatable (e.g. float32 and mixed_bfloat16 in one run); default float32",
    )
    p.add_argument(
        "--fold-bn",
        action="append",
        choices=("off", "on"),
        help="repeatable (off and on in one run): BatchNorm computed as fit does (frozen BatchNorm folded "
        "into the convolution, BatchNorm that trains by TensorFlow's fused kernel) instead of Keras's "
        "layer; default off",
    )
    p.add_argument(
        "--train-bn",
        action="store_true",
        help="train mode updates BatchNorm (batch statistics) instead of keeping it frozen as fit does",
    )
    p.add_argument("--data", default="scenes", help="files that --mode input decodes (default: the demo set)")
    p.add_argument(
        "--augment",
        action="append",
        help="repeatable; what --mode input applies, as fit's --augment (default flip)",
    )
    p.add_argument("--intra-op", type=int, help="TensorFlow intra-op threads (default: TensorFlow's choice)")
    p.add_argument("--inter-op", type=int, help="TensorFlow inter-op threads (default: TensorFlow's choice)")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    return p


def add_speedups(rows: list[dict]) -> None:
    """``vs_float32``: images/s over the float32 row of the same backbone, mode, format, size, batch and
    folding; ``vs_unfolded``: a folded row's images/s over the unfolded row of the same precision."""

    def key(r):
        return r["backbone"], r["mode"], r.get("format"), r["image_size"], r["batch_size"]

    base = {(*key(r), r.get("fold_bn")): r["images_per_sec"] for r in rows if r["precision"] == "float32"}
    unfolded = {(*key(r), r["precision"]): r["images_per_sec"] for r in rows if r.get("fold_bn") is False}
    for r in rows:
        reference = base.get((*key(r), r.get("fold_bn")))
        if reference and r["precision"] not in ("float32", "-"):
            r["vs_float32"] = round(r["images_per_sec"] / reference, 3)
        reference = unfolded.get((*key(r), r["precision"]))
        if reference and r.get("fold_bn"):
            r["vs_unfolded"] = round(r["images_per_sec"] / reference, 3)


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'backbone':<22} {'mode':<7} {'format/aug':<12} {'size':>5} {'batch':>5} {'precision':<16} "
        f"{'fold':<4} {'images/s':>9} {'step s':>8} {'params':>12} {'vs f32':>7} {'vs unf':>7} "
        f"{'GFLOP/s':>8} {'ceiling':>8} {'of ceil':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r['vs_float32']:.2f}x" if "vs_float32" in r else ""
        vs_unfolded = f"{r['vs_unfolded']:.2f}x" if "vs_unfolded" in r else ""
        fold = {True: "on", False: "off"}.get(r.get("fold_bn"), "")
        achieved = f"{r['gflop_per_sec']:.1f}" if "gflop_per_sec" in r else ""
        ceiling = f"{r['ceiling_gflop_per_sec']:.0f}" if "ceiling_gflop_per_sec" in r else ""
        fraction = f"{r['of_ceiling']:.1%}" if "of_ceiling" in r else ""
        lines.append(
            f"{r['backbone']:<22} {r['mode']:<7} {r.get('augment', r.get('format', '')):<12} "
            f"{r['image_size']:>5} "
            f"{r['batch_size']:>5} "
            f"{r['precision']:<16} {fold:<4} {r['images_per_sec']:>9.2f} {r['step_seconds_median']:>8.3f} "
            f"{r['params']:>12,} {ratio:>7} {vs_unfolded:>7} {achieved:>8} {ceiling:>8} {fraction:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        import tensorflow as tf

        from kerasimg.benchmarks.throughput import measure, measure_serving, measure_variants

        if args.intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
        if args.inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
        rows = []
        batch_sizes = args.batch_size or [32]
        precisions = args.precision or ["float32"]
        folds = [choice == "on" for choice in args.fold_bn or ["off"]]
        for backbone in args.backbone:
            for mode in args.mode or ["train"]:
                print(f"Measuring {backbone} ({mode})...", flush=True)
                if mode == "serve":  # one export per precision with every format, timed at every batch size
                    for precision in precisions:
                        rows += measure_serving(
                            backbone,
                            args.format or [SAVEDMODEL],
                            args.image_size,
                            batch_sizes,
                            args.steps,
                            args.warmup,
                            precision=precision,
                        )
                    continue
                for batch_size in batch_sizes:
                    if mode == "input":  # the input pipeline has no model, so no precision to vary
                        for augment in args.augment or ["flip"]:
                            rows.append(
                                measure(
                                    backbone,
                                    mode,
                                    args.image_size,
                                    batch_size,
                                    args.steps,
                                    args.warmup,
                                    data=args.data,
                                    augment=augment,
                                )
                            )
                        continue
                    # Every precision and folding of one mode timed in turn, step by step.
                    rows += measure_variants(
                        backbone,
                        mode,
                        args.image_size,
                        batch_size,
                        args.steps,
                        args.warmup,
                        precisions=precisions,
                        fold_bn=folds,
                        train_bn=args.train_bn,
                    )
        add_speedups(rows)
        print(format_table(rows))
        if args.json:
            write_json(args.json, rows)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
