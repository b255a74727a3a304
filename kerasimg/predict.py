"""``python -m kerasimg.predict --model saved_models/NAME[/VERSION] IMAGE_OR_FOLDER... [--csv OUT] [--json]``.

Loads the SavedModel with plain TensorFlow (no kerasimg model code) and sends the
files' bytes through its ``serving_default`` signature, as TF Serving would,
``--batch-size`` files per call (1: one call per file).
Unreadable files are reported by name; the rest are still predicted. ``--csv``
writes one row per file: file, top-1 class and score, the top-k classes and scores.
``--format`` runs the version's ONNX or LiteRT file instead, on the same decoded pixels.
"""

from __future__ import annotations

import json
import sys

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.serving.batch_predict import write_csv
from kerasimg.serving.formats import FORMATS, SAVEDMODEL, SERVING_PRECISIONS
from kerasimg.serving.zoo import DEFAULT_ZOO


def main(argv: list[str] | None = None) -> int:
    p = command_parser("python -m kerasimg.predict", __doc__)
    p.add_argument(
        "--model",
        required=True,
        help="saved_models/NAME[/VERSION], a SavedModel folder, or NAME[/VERSION] in --zoo",
    )
    p.add_argument(
        "--zoo",
        default=None,
        help=f"the zoo that --model NAME is looked up in (default {DEFAULT_ZOO}); when given, its model "
        "wins over a same-named folder here",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default: 3)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="skip images whose header claims more pixels than this",
    )
    p.add_argument("--json", action="store_true", help="print the results as a JSON list instead of a table")
    p.add_argument("--csv", default=None, help="write one row per file to this CSV instead of printing them")
    p.add_argument("--batch-size", type=int, default=32, help="files per signature call (1: one per file)")
    p.add_argument(
        "--format",
        default=SAVEDMODEL,
        choices=list(FORMATS),
        help="which exported file of the version runs (onnx, litert* and openvino need `kerasimg export "
        "--format`)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=SERVING_PRECISIONS,
        help="what the file computes in; auto: what its export chose (see export --precision); a SavedModel "
        "computes in the one precision it was exported in, and another is refused",
    )
    args = p.parse_args(argv)

    def run() -> int:
        results = api.predict(
            args.model,
            args.images,
            top_k=args.top_k,
            zoo=args.zoo,
            max_pixels=args.max_pixels,
            batch_size=args.batch_size,
            format=args.format,
            precision=args.precision,
        )
        if args.csv:
            write_csv(results, args.csv, args.top_k)
            print(f"Wrote {len(results) - sum('error' in r for r in results)} prediction(s) to {args.csv}.")
        elif args.json:
            print(json.dumps(results, indent=2))
        else:
            for r in results:
                if "error" in r:
                    print(f"{r['file']}: UNREADABLE ({r['error']})")
                else:
                    top = ", ".join(f"{n} {s:.1%}" for n, s in r["top"])
                    if "predicted" in r:  # a multi-label model: the classes above their thresholds
                        top = f"{', '.join(r['predicted']) or '(no class)'} (top: {top})"
                    print(f"{r['file']}: {top}")
        bad = sum("error" in r for r in results)
        if bad:
            print(f"{bad} of {len(results)} file(s) could not be read.", file=sys.stderr)
        if bad == len(results):
            print("error: nothing could be predicted.", file=sys.stderr)
            return 1
        return 0

    return run_cli(run)


# ``kerasimg.predict(...)`` is the API call even after this CLI module is imported (see kerasimg.api).
callable_module(__name__, api.predict)

if __name__ == "__main__":
    sys.exit(main())
