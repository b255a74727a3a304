"""Training without the files an audit flagged (``fit --exclude audit.csv --exclude-issues label,duplicate``).

``audit.csv`` (written by ``python -m kerasimg.audit``) has one row per flagged file and
issue; the files whose issue is one of ``issues`` are dropped from the training pool
before validation is carved from it. Test files are never dropped, so runs with and
without exclusion are scored on the same images.
"""

from __future__ import annotations

import csv
import os

from kerasimg.data.splits import FileSplit
from kerasimg.errors import UserError

ISSUES = ("label", "duplicate", "outlier")
DEFAULT_ISSUES = "label,duplicate"


def parse_issues(issues: str) -> tuple[str, ...]:
    """``"label,duplicate"`` -> ``("label", "duplicate")``; an unknown name is refused."""
    names = tuple(n.strip() for n in issues.split(",") if n.strip())
    unknown = [n for n in names if n not in ISSUES]
    if unknown or not names:
        raise UserError(
            f"exclude_issues takes a comma-separated list of {', '.join(ISSUES)}. Received: "
            f"exclude_issues={issues!r}"
        )
    return names


def read_exclusions(path: str | os.PathLike, issues: str = DEFAULT_ISSUES) -> set[str]:
    """The real paths of the files ``audit.csv`` flags with one of ``issues``."""
    wanted = parse_issues(issues)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(
            f"No audit table at {path}: run `python -m kerasimg.audit DATA` first. "
            f"Received: exclude={str(path)!r}"
        ) from None
    if rows and not {"file", "issue"} <= set(rows[0]):
        raise UserError(
            f"{path} is not a kerasimg audit.csv (it has no file and issue columns); pass the audit.csv "
            f"that python -m kerasimg.audit wrote. Received: exclude={str(path)!r}"
        )
    return {os.path.realpath(r["file"]) for r in rows if r["issue"] in wanted}


def without(split: FileSplit, excluded: set[str]) -> tuple[FileSplit, int]:
    """``split`` without the files in ``excluded`` (real paths), and how many were dropped."""
    kept = split.subset(i for i, p in enumerate(split.paths) if os.path.realpath(p) not in excluded)
    return kept, len(split) - len(kept)
