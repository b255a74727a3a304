"""Result tables written twice: CSV for programs, Markdown for people.

A column is ``(key, header, format)``; the format is a ``str.format`` spec applied
to the row's value, and a missing value prints empty.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from kerasimg.files import write_text

Column = tuple[str, str, str]


def format_cell(value, spec: str) -> str:
    """A value by a format spec; empty for missing values, the plain text when the spec does not fit."""
    if value is None or value == "":
        return ""
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def markdown_table(rows: list[dict], columns: list[Column]) -> str:
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(key), spec) for key, _, spec in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[Column]) -> Path:
    """Raw values (not formatted), one row per dict, keys as the header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([key for key, _, _ in columns])
    for row in rows:
        writer.writerow(["" if row.get(key) is None else row.get(key) for key, _, _ in columns])
    return write_text(path, buffer.getvalue())
