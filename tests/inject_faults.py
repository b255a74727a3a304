"""Plant known faults in a copy of a data set, and score an audit against them.

``inject(source, target, flip=0.1, duplicates=30)`` copies a ``train/`` + ``test/`` (or Intel)
layout into ``target/train`` and ``target/test``, moves a random ``flip`` fraction of the
training images into another class's folder (a wrong label), and writes ``duplicates``
training images into the test split of their class re-encoded at JPEG quality 70 and resized
to 90% (leakage that a byte hash cannot see). ``target/faults.json`` lists both.

    python tests/inject_faults.py scenes:100,30 /tmp/faulty --flip 0.1 --duplicates 30
    python -m kerasimg.audit /tmp/faulty --backbone small_cnn --weights none --out /tmp/faulty-audit
    python tests/inject_faults.py --score /tmp/faulty /tmp/faulty-audit

Scoring: precision and recall of the label ranking's top N (N = the number flipped), the
share of planted duplicates found, and the share of clean images flagged as duplicates.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _source_root(source: str) -> Path:
    if source.startswith("scenes"):
        from kerasimg.data.sources import _scenes_root

        return _scenes_root(source)
    return Path(source)


def _split_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        for candidate in (root / name / name, root / name):
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError(f"no {names[0]} folder in {root}")


def inject(
    source: str, target: str | os.PathLike, flip: float = 0.1, duplicates: int = 30, seed: int = 0
) -> dict:
    """Copy ``source`` to ``target`` with planted faults; returns (and writes) the fault list."""
    root, target = _source_root(source), Path(target)
    rng = np.random.default_rng(seed)
    for split, names in (("train", ("seg_train", "train")), ("test", ("seg_test", "test"))):
        shutil.copytree(_split_dir(root, names), target / split)
    classes = sorted(p.name for p in (target / "train").iterdir() if p.is_dir())
    files = sorted(str(p) for c in classes for p in (target / "train" / c).iterdir())
    chosen = rng.permutation(len(files))
    flipped, planted = [], []
    for i in chosen[: round(flip * len(files))]:
        path = Path(files[i])
        wrong = rng.choice([c for c in classes if c != path.parent.name])
        moved = target / "train" / wrong / f"flipped-{path.parent.name}-{path.name}"
        path.rename(moved)
        flipped.append(str(moved))
    for k, i in enumerate(chosen[len(flipped) : len(flipped) + duplicates]):
        path = Path(files[i])
        with Image.open(path) as image:
            small = image.resize(
                (round(image.width * 0.9), round(image.height * 0.9)), Image.Resampling.BICUBIC
            )
            copy = target / "test" / path.parent.name / f"leaked-{k}.jpg"
            small.convert("RGB").save(copy, quality=70)
        planted.append([str(path), str(copy)])
    faults = {"source": source, "flipped": flipped, "duplicates": planted, "seed": seed}
    (target / "faults.json").write_text(json.dumps(faults, indent=1))
    return faults


def score(target: str | os.PathLike, audit_dir: str | os.PathLike) -> dict:
    """How well the audit in ``audit_dir`` found the faults planted in ``target``."""
    faults = json.loads((Path(target) / "faults.json").read_text())
    real = os.path.realpath
    flipped = {real(p) for p in faults["flipped"]}
    with open(Path(audit_dir) / "label_ranking.csv", newline="") as f:
        ranking = [real(r["file"]) for r in csv.DictReader(f)]
    top = ranking[: len(flipped)]
    hits = sum(p in flipped for p in top)
    with open(Path(audit_dir) / "audit.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["issue"] == "duplicate"]
    found_pairs = {frozenset((real(r["file"]), real(r["duplicate_of"]))) for r in rows}
    planted = [frozenset(map(real, pair)) for pair in faults["duplicates"]]
    planted_files = set().union(*planted) if planted else set()
    audited = sum(1 for split in ("train", "test") for _ in (Path(target) / split).rglob("*.jpg"))
    clean_flagged = {real(r["file"]) for r in rows} - planted_files
    return {
        "label_top_n": len(flipped),
        "label_precision": hits / max(len(top), 1),
        "label_recall": hits / max(len(flipped), 1),
        "duplicates_found": sum(p in found_pairs for p in planted) / max(len(planted), 1),
        "clean_flagged_as_duplicate": len(clean_flagged) / max(audited - len(planted_files), 1),
        "clean_flagged_files": sorted(clean_flagged),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="scenes:TRAIN,TEST or a train/test folder; with --score, the faulty set")
    p.add_argument("target", help="where the faulty copy goes; with --score, the audit folder")
    p.add_argument("--flip", type=float, default=0.1)
    p.add_argument("--duplicates", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score", action="store_true", help="score the audit TARGET of the faulty set SOURCE")
    args = p.parse_args(argv)
    if args.score:
        result = score(args.source, args.target)
        print(json.dumps({k: v for k, v in result.items() if k != "clean_flagged_files"}, indent=1))
        return 0
    faults = inject(args.source, args.target, args.flip, args.duplicates, args.seed)
    print(
        f"{len(faults['flipped'])} labels flipped, {len(faults['duplicates'])} duplicates planted "
        f"in {args.target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
