"""Result tables written twice: CSV for programs, Markdown for people.

A column is ``(key, header, format)``; the format is a ``str.format`` spec applied
to the row's value, and a missing value prints empty.

Every CSV kerasimg writes goes through ``csv_writer``: a text cell that a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) gets a leading ``'``, as OWASP's CSV-injection advice says. A cell that starts
with ``'`` gets one too, so ``csv_value`` undoes it exactly when kerasimg reads a CSV back.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from kerasimg.files import write_text

Column = tuple[str, str, str]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A negative number as Python writes it ("-0.5", "-1e-05") is a number to a spreadsheet, never a
# formula: left as it is, so a loss of -0.0 or a negative score stays a number.
_NUMBER = re.compile(r"-\d+(\.\d+)?([eE][+-]?\d+)?")


def csv_cell(value):
    """``value`` safe to open in a spreadsheet: text that could start a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'")) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_value(cell: str) -> str:
    """A cell written through ``csv_cell`` back as it was."""
    return cell[1:] if cell.startswith("'") else cell


class csv_writer:  # noqa: N801  (used like csv.writer)
    """``csv.writer`` over ``stream`` whose rows pass through ``csv_cell``."""

    def __init__(self, stream):
        self._writer = csv.writer(stream, lineterminator="\n")
        # csv quotes a field holding a line terminator's characters, and ours is "\n": a "\r" in a name
        # would end the row for a reader, so a row holding one is written with every field quoted.
        self._quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row) -> None:
        cells = [csv_cell(value) for value in row]
        carriage_return = any(isinstance(c, str) and "\r" in c for c in cells)
        (self._quoted if carriage_return else self._writer).writerow(cells)


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
    writer = csv_writer(buffer)
    writer.writerow([key for key, _, _ in columns])
    for row in rows:
        writer.writerow(["" if row.get(key) is None else row.get(key) for key, _, _ in columns])
    return write_text(path, buffer.getvalue())
