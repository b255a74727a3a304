"""The audit: data -> out-of-fold probabilities and embeddings -> label issues, duplicates, outliers.

``audit_data`` resolves and checks its arguments before reading any image, then writes
the audit folder (``AuditDir``). The training pool (train and the validation carved from
it, as ``fit`` would load them with the same seed) is judged for label issues; every split
is searched for duplicates within it and across splits, and for outliers.
"""

from __future__ import annotations

import functools
import operator
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasimg.data import FileSplit, load_data
from kerasimg.data.duplicates import exact_groups
from kerasimg.diagnose.audit_duplicates import MAX_DISTANCE, MIN_COSINE, near_duplicate_pairs, phash
from kerasimg.diagnose.audit_labels import RANKINGS, find_label_issues
from kerasimg.diagnose.audit_outliers import find_outliers, imbalance
from kerasimg.diagnose.audit_probabilities import FeatureProbe, ShortFit
from kerasimg.diagnose.audit_report import AuditDir
from kerasimg.errors import ArgumentError, UserError
from kerasimg.models import get_backbone

SPLIT_ORDER = ("train", "val", "test")


@dataclass
class AuditResult:
    out: Path
    rows: list[dict]
    summary: dict
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def count(self, issue: str) -> int:
        return sum(r["issue"] == issue for r in self.rows)


def _check(folds, epochs, batch_size, ranking, max_distance, min_cosine) -> None:
    for name, value, least in (("folds", folds, 2), ("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if value < least:
            raise ArgumentError(name, f"must be at least {least}", value)
    if ranking not in RANKINGS:
        raise ArgumentError("ranking", f"must be one of {', '.join(RANKINGS)}", ranking)
    if not 0 <= max_distance < 0.5:
        raise ArgumentError("max_distance", "must be in [0, 0.5) (a fraction of the hash bits)", max_distance)
    if min_cosine is not None and not 0 < min_cosine <= 1:
        raise ArgumentError("min_cosine", "must be in (0, 1]", min_cosine)


def audit_data(
    data: str = "scenes",
    *,
    backbone: str = "resnet50",
    weights: str = "imagenet",
    folds: int = 5,
    out: str | os.PathLike = "audit",
    image_size: int | None = None,
    epochs: int = 15,
    batch_size: int = 32,
    seed: int = 0,
    ranking: str = "self_confidence",
    max_distance: float = MAX_DISTANCE,
    min_cosine: float | None = MIN_COSINE,
    log=print,
) -> AuditResult:
    """Audit ``data``; see ``kerasimg.audit`` for the arguments."""
    started = time.time()
    _check(folds, epochs, batch_size, ranking, max_distance, min_cosine)
    spec = get_backbone(backbone)
    size = int(spec.image_size if image_size is None else image_size)
    target = AuditDir(out)
    if target.path.exists() and not target.path.is_dir():
        raise UserError(
            f"The audit folder {target.path} is a file; choose another --out. Received: out={out!r}"
        )
    loaded = load_data(data, seed=seed, log=log)
    if not isinstance(loaded.train, FileSplit):
        raise UserError(
            f"The audit reads image files; {data} is not a folder of them. Received: data={data!r}"
        )
    names = loaded.class_names
    splits = {"train": loaded.train, "test": loaded.test}
    if loaded.val is not loaded.test:
        splits["val"] = loaded.val
    splits = {s: splits[s] for s in SPLIT_ORDER if s in splits}
    pool_names = [s for s in ("train", "val") if s in splits]
    pool = functools.reduce(operator.add, (splits[s] for s in pool_names))
    every = functools.reduce(operator.add, splits.values())
    split_of = np.array([s for s, split in splits.items() for _ in split.paths])
    pretrained = weights != "none"
    if pretrained:
        method = f"logistic regression on {backbone} features ({weights})"
        model = FeatureProbe(
            backbone, len(names), size, weights, batch_size, folds, seed, target.features_dir, log
        )
    else:
        method = f"{backbone} trained from scratch for {epochs} epochs per fold"
        model = ShortFit(backbone, len(names), size, epochs, batch_size, folds, seed, log)
    log(f"Auditing {len(every)} images of {loaded.name}: out-of-fold probabilities by {method}...")
    probabilities = model.out_of_fold(pool)
    embeddings = model.embed(every)
    labels = np.asarray(pool.labels)
    issues = find_label_issues(labels, probabilities, ranking)

    def ranked(i: int) -> dict:
        return {
            "file": pool.paths[i],
            "split": split_of[i],
            "score": float(issues.scores[i]),
            "given_label": names[labels[i]],
            "suggested_label": names[issues.suggested[i]],
        }

    rows: list[dict] = [
        {
            **ranked(i),
            "issue": "label",
            "detail": f"p(given) {probabilities[i, labels[i]]:.3f}, "
            f"p(suggested) {probabilities[i, issues.suggested[i]]:.3f}",
        }
        for i in issues.ranked()
        if issues.is_issue[i]
    ]
    ranking_rows = [
        {
            "rank": rank,
            **ranked(i),
            "flagged": bool(issues.is_issue[i]),
            **{f"p_{name}": round(float(p), 6) for name, p in zip(names, probabilities[i])},
        }
        for rank, i in enumerate(issues.ranked(), 1)
    ]
    log("Hashing images for duplicates...")
    rows += _duplicates(every, split_of, names, embeddings, max_distance, min_cosine)
    outliers = find_outliers(embeddings[: len(pool)], labels, embeddings, len(names))
    for i in np.argsort(-outliers.distance, kind="stable"):
        if outliers.is_outlier[i]:
            rows.append(
                {
                    "file": every.paths[i],
                    "split": split_of[i],
                    "issue": "outlier",
                    "score": float(outliers.distance[i]),
                    "given_label": names[every.labels[i]],
                    "suggested_label": names[outliers.nearest[i]],
                    "detail": f"distance to the nearest class {outliers.distance[i]:.3f} "
                    f"(fence {outliers.fence:.3f})",
                }
            )
    counts = pool.class_counts(len(names))
    warnings = [w for w in (imbalance(counts, names),) if w]
    leaks = [r for r in rows if r.get("cross_split")]
    if leaks:
        warnings.append(
            f"{len(leaks)} image(s) have a copy in another split (leakage: it inflates test accuracy)."
        )
    summary = {
        "data": data,
        "source": loaded.source,
        "images": len(every),
        "splits": {s: len(split) for s, split in splits.items()},
        "class_counts": dict(zip(names, counts)),
        "method": method,
        "backbone": backbone,
        "weights": weights,
        "image_size": size,
        "folds": folds,
        "seed": seed,
        "ranking": ranking,
        "thresholds": dict(zip(names, np.round(issues.thresholds, 4).tolist())),
        "confident_joint": np.round(issues.joint, 2).tolist(),
        "estimated_label_issues": issues.estimated_issues,
        "out_of_fold_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "issues": {k: sum(r["issue"] == k for r in rows) for k in ("label", "duplicate", "outlier")},
        "cross_split_duplicates": len(leaks),
        "duplicate_thresholds": {"max_distance": max_distance, "min_cosine": min_cosine},
        "outlier_fence": outliers.fence,
        "warnings": warnings,
        "seconds": round(time.time() - started, 1),
    }
    target.write(rows, ranking_rows, summary)
    return AuditResult(target.path, rows, summary, time.time() - started, warnings)


def _duplicates(every, split_of, names, embeddings, max_distance, min_cosine) -> list[dict]:
    """One row per flagged copy: across splits the earlier split's file (train before test), so
    dropping it from training ends the leak; within a split the later file."""
    index = {p: i for i, p in enumerate(every.paths)}
    found: dict[tuple[int, int], tuple[str, float]] = {}  # pair -> (how they match, similarity)
    for group in exact_groups(every.paths):
        for other in group[1:]:
            found[(index[group[0]], index[other])] = ("exact", 1.0)
    hashes = np.stack([phash(p) for p in every.paths])
    for pair in near_duplicate_pairs(hashes, embeddings, max_distance=max_distance, min_cosine=min_cosine):
        kind = f"near (hash distance {pair.distance:.3f}, cosine {pair.cosine:.3f})"
        found.setdefault((pair.first, pair.second), (kind, 1.0 - pair.distance))
    rank = {s: k for k, s in enumerate(SPLIT_ORDER)}
    rows, flagged = [], set()
    # The closest pairs first, so a file is reported beside its best match.
    for (a, b), (kind, score) in sorted(found.items(), key=lambda item: (-item[1][1], item[0])):
        sa, sb = split_of[a], split_of[b]
        if sa == sb:
            flag, keep, scope = b, a, sa
        else:
            flag, keep = (a, b) if rank[sa] < rank[sb] else (b, a)
            scope = f"{split_of[flag]}-{split_of[keep]}"
        if flag in flagged:
            continue
        flagged.add(flag)
        rows.append(
            {
                "file": every.paths[flag],
                "split": split_of[flag],
                "issue": "duplicate",
                "score": score,
                "given_label": names[every.labels[flag]],
                "suggested_label": "",
                "duplicate_of": every.paths[keep],
                "detail": f"{scope}, {kind}",
                "cross_split": sa != sb,
            }
        )
    return sorted(rows, key=lambda r: -r["score"])
