"""``python -m kerasimg.pack DATA --out DIR``: a data set's splits as sharded TFRecord files.

Resolves ``DATA`` as ``fit --data DATA`` does with the same ``--seed``, ``--val-split``,
``--val-from`` and ``--verify`` (same classes, same stratified splits), and writes each
split's image files, as their bytes, into record shards with a ``manifest.json`` (class
names, counts, each shard's SHA-256, the files that could not be decoded). ``python -m
kerasimg.fit --data DIR`` then reads the shards instead of the files.
"""

from __future__ import annotations

import argparse
import sys

from kerasimg import api
from kerasimg.api import callable_module
from kerasimg.cli import command_parser, run_cli
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.data.packed import DEFAULT_SHARD_MB
from kerasimg.data.sources import VAL_FROM, VERIFY


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.pack", __doc__)
    p.add_argument("data", help="scenes[:TRAIN,TEST], a folder of class subfolders or the Intel layout")
    p.add_argument("--out", required=True, help="the folder the shards and manifest.json are written into")
    p.add_argument("--val-split", type=float, default=0.1, help="as fit's: validation carved from train")
    p.add_argument("--val-from", default="train", choices=VAL_FROM, help="as fit's")
    p.add_argument("--seed", type=int, default=0, help="as fit's: seeds the splits and the records' order")
    p.add_argument(
        "--verify",
        default="pipeline",
        choices=VERIFY,
        help="as fit's: which files the splits are carved from (every file is checked before packing)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="leave out images with more pixels than this",
    )
    p.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_MB, help="megabytes of records per shard")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a folder that holds other files (they are left alone); an earlier pack is replaced "
        "without it",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        result = api.pack(**vars(args))
        m = result.manifest
        counts = ", ".join(f"{name} {info['count']:,}" for name, info in m["splits"].items())
        print(
            f"\nPacked {result.images:,} images ({counts}; {len(m['class_names'])} classes) into "
            f"{result.shards} shard(s) in {result.out} in {result.seconds:.0f} s."
        )
        if m["skipped"]:
            print(f"Left out {len(m['skipped'])} unreadable file(s), listed in {result.out}/manifest.json.")
        print(f"Train on it: python -m kerasimg.fit --data {result.out}")
        return 0

    return run_cli(run)


# ``kerasimg.pack(...)`` is the API call even after this CLI module is imported (see kerasimg.api).
callable_module(__name__, api.pack)

if __name__ == "__main__":
    sys.exit(main())
