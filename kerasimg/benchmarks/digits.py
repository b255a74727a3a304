"""scikit-learn's bundled handwritten digits as an image folder: real data that needs no download.

``python -m kerasimg.benchmarks.digits OUT [--size 32] [--test-fraction 0.3] [--seed 0]`` writes the
1,797 8x8 scans (UCI's optical digits, shipped inside scikit-learn) as grey PNGs enlarged to
``--size`` pixels, in ``OUT/train/<digit>/`` and ``OUT/test/<digit>/``, the test split stratified
and seeded. ``fit --data OUT`` reads it like any folder. The recipe comparisons use it beside the
drawn ``scenes`` set, so a claim about recipes rests on real handwriting too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from kerasimg.cli import run_cli
from kerasimg.errors import UserError
from kerasimg.files import atomic_folder

SPLITS = ("train", "test")


def write_digits(
    out: str | os.PathLike, size: int = 32, test_fraction: float = 0.3, seed: int = 0
) -> dict[str, int]:
    """Write the digits folder at ``out`` (which must not exist yet); return the image count per split.

    The folder is built under a temporary name and renamed into place (``atomic_folder``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 8 <= size <= 1024:
        raise UserError(f"--size takes 8 to 1024 pixels. Received: size={size}")
    if not 0.05 <= test_fraction <= 0.95:
        # Outside this, a stratified split leaves some digit fewer images than there are classes.
        raise UserError(
            f"--test-fraction takes a number from 0.05 to 0.95. Received: test_fraction={test_fraction}"
        )
    target = Path(out).resolve()
    if target.exists():
        raise UserError(
            f"The digits folder is written only where nothing is yet. Received: out={str(target)!r}"
        )
    digits = load_digits()
    # Scans hold 0..16 ink levels; scale to 0..255 and enlarge smoothly, as a camera would see them.
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    indices = {}
    indices["train"], indices["test"] = train_test_split(
        np.arange(len(images)), test_size=test_fraction, stratify=digits.target, random_state=seed
    )

    def fill(tmp: Path) -> None:
        for split in SPLITS:
            for i in indices[split]:
                folder = tmp / split / str(digits.target[i])
                folder.mkdir(parents=True, exist_ok=True)
                picture = Image.fromarray(images[i], mode="L").resize((size, size), Image.Resampling.BILINEAR)
                picture.save(folder / f"{i}.png")

    atomic_folder(target, fill)
    return {split: len(indices[split]) for split in SPLITS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kerasimg.benchmarks.digits", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out", help="the folder to write (must not exist)")
    parser.add_argument("--size", type=int, default=32, help="side of each image in pixels (default 32)")
    parser.add_argument(
        "--test-fraction", type=float, default=0.3, help="share of the test split, 0.05-0.95 (default 0.3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified test split (default 0)")
    args = parser.parse_args(argv)

    def run() -> int:
        counts = write_digits(args.out, size=args.size, test_fraction=args.test_fraction, seed=args.seed)
        where = Path(args.out).resolve()
        print(f"Wrote {counts['train']} training and {counts['test']} test digits to {where}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
