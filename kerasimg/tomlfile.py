"""The TOML files people edit (search spaces, plans): read once, each mistake one line.

``tomllib`` gives values without positions, so ``TomlFile.line`` finds a key's line
by scanning the text by table; every message names the file, the line and the key.
A schema is a dict of key -> kind ("integer", "number", "numbers", "string",
"boolean", "table"); ``kind_of`` turns a dataclass field's annotation into a kind, so
a schema follows the dataclass it fills instead of repeating it.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import UserError


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


KINDS = {
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer such as 3"),
    "number": (_number, "a number such as 0.1"),
    "numbers": (
        lambda v: _number(v) or (isinstance(v, list) and all(_number(x) for x in v)),
        "a number or a list of numbers such as [1.0, 1.1]",
    ),
    "string": (lambda v: isinstance(v, str), 'a string in quotes such as "flip"'),
    "strings": (
        lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        'a string or a list of strings such as ["flip", "rrc,flip"]',
    ),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "table": (lambda v: isinstance(v, dict), "a table such as { epochs = 1 }"),
    "tables": (
        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "a list of tables, each written [[name]]",
    ),
}
_ANNOTATIONS = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")


def kind_of(annotation: str) -> str:
    """The kind of a dataclass field annotated ``annotation`` (``"int | None"`` -> ``"integer"``)."""
    base = annotation.replace(" | None", "").strip()
    if base.startswith("tuple[float"):
        return "numbers"
    return _ANNOTATIONS[base]


@dataclass
class TomlFile:
    path: Path
    text: str
    data: dict

    def _sections(self) -> list[tuple[str | None, bool, int, int, int]]:
        """(table, is_array, occurrence, first line, last line) of each part of the file."""
        lines = self.text.splitlines()
        sections, counts, current = [], {}, (None, False, 0, 1)
        for number, line in enumerate(lines, 1):
            match = _HEADER.match(line)
            if match:
                sections.append((*current, number - 1))
                name, is_array = match.group(2), match.group(1) == "[["
                counts[name] = counts.get(name, -1) + 1 if is_array else 0
                current = (name, is_array, counts[name], number)
        sections.append((*current, len(lines)))
        return sections

    def line(self, key: str | None, table: str | None = None, index: int | None = None) -> int:
        """The line of ``key = ...`` in ``[table]`` (the ``index``-th ``[[table]]``); its header if absent."""
        lines = self.text.splitlines()
        pattern = re.compile(rf"(^|[{{,\s]){re.escape(key)}\s*=") if key else None
        for name, is_array, occurrence, first, last in self._sections():
            if name != table or (index is not None and (not is_array or occurrence != index)):
                continue
            for number in range(first, last + 1):
                body = lines[number - 1].split("#", 1)[0]
                if pattern and not _HEADER.match(body) and pattern.search(body):
                    return number
            if table is not None:
                return first
        if key is not None:  # a key written as its own table, e.g. [experiment]
            for name, _, _, first, _ in self._sections():
                if name == key:
                    return first
        return 1

    def error(self, message: str, key: str | None = None, table: str | None = None, index=None) -> UserError:
        return UserError(f"{self.path}, line {self.line(key, table, index)}: {message}")

    def check(self, values: dict, schema: dict[str, str], table: str | None = None, index=None) -> dict:
        """``values`` if each key is in ``schema`` and of its kind, else a ``UserError`` at the key's line.

        An unknown key's message suggests the closest known one (a typo such as ``epoch``).
        """
        where = "at the top level" if table is None else f"in [{table}]"
        for key, value in values.items():
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else "."
                raise self.error(
                    f"unknown key {key!r} {where}{hint} Known keys: {', '.join(sorted(schema))}",
                    key,
                    table,
                    index,
                )
            accepts, expected = KINDS[schema[key]]
            if not accepts(value):
                raise self.error(f"{key!r} must be {expected}. Received: {key}={value!r}", key, table, index)
        return values


def read_toml(path: str | Path, what: str) -> TomlFile:
    """Read a TOML file; a missing file, a folder, non-UTF-8 text or bad TOML is one ``UserError``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"The {what} {path} is a folder; give the path of a .toml file. Received: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{what[0].upper() + what[1:]} not found: {path}") from None
    except UnicodeDecodeError as error:
        raise UserError(
            f"The {what} {path} is not UTF-8 text (byte {error.start}); TOML files are UTF-8. "
            "Save it as UTF-8."
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from None
    return TomlFile(path, text, data)
