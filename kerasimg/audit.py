"""``python -m kerasimg.audit DATA [--backbone B --weights W] [--folds K] [--out DIR]``.

Finds likely mislabelled training images (confident learning on out-of-fold
probabilities), exact and near duplicates within and across splits (leakage), and
outliers, and writes ``audit.csv``, ``label_ranking.csv``, ``audit.json`` and
``audit.html`` into ``--out``. ``python -m kerasimg.fit --exclude DIR/audit.csv`` then
trains without the flagged files.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.diagnose.audit_duplicates import MAX_DISTANCE, MIN_COSINE
from kerasimg.diagnose.audit_labels import RANKINGS


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.audit", __doc__)
    p.add_argument("data", help="scenes[:TRAIN,TEST], a folder of class subfolders or the Intel layout")
    p.add_argument("--backbone", default="resnet50", help="a registered backbone (python -m kerasimg.models)")
    p.add_argument(
        "--weights",
        default="imagenet",
        help="pretrained weights: a logistic regression per fold on their features; none: a short fit "
        "from scratch per fold (--epochs)",
    )
    p.add_argument("--folds", type=int, default=5, help="stratified folds for out-of-fold probabilities")
    p.add_argument("--out", default="audit", help="the folder the audit files are written into")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's own size")
    p.add_argument("--epochs", type=int, default=15, help="epochs of each fold's fit (--weights none)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--seed", type=int, default=0, help="seeds the splits (as fit's), the folds and the fits")
    p.add_argument(
        "--ranking", default="self_confidence", choices=RANKINGS, help="how label issues are ordered"
    )
    p.add_argument(
        "--max-distance",
        type=float,
        default=MAX_DISTANCE,
        help="near duplicates: at most this fraction of the perceptual hash's bits differ",
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=MIN_COSINE,
        help="near duplicates: also pairs whose embeddings are at least this cosine-similar (e.g. 0.98 "
        "with pretrained weights; default off)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        result = api.audit(**vars(args))
        s = result.summary
        print(
            f"\n{s['issues']['label']} label issue(s) (confident learning estimates "
            f"{s['estimated_label_issues']}; out-of-fold accuracy {s['out_of_fold_accuracy']:.1%}), "
            f"{s['issues']['duplicate']} duplicate(s) ({s['cross_split_duplicates']} across splits), "
            f"{s['issues']['outlier']} outlier(s) among {s['images']} images; {result.seconds:.0f} s."
        )
        for warning in result.warnings:
            print(f"Warning: {warning}")
        print(
            f"Files: {result.out}/ (audit.html, audit.csv, label_ranking.csv, audit.json). Train without "
            f"them: python -m kerasimg.fit --data {args.data} --exclude {result.out}/audit.csv"
        )
        return 0

    return run_cli(run)


# ``kerasimg.audit(...)`` is the API call even after this CLI module is imported (see kerasimg.api).
callable_module(__name__, api.audit)

if __name__ == "__main__":
    sys.exit(main())
