"""The one rule for names that become folders (zoo models, projects, experiments), and for class names."""

from __future__ import annotations

import re
from pathlib import Path

from kerasimg.errors import UserError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is safe as one folder name, else raise ``UserError``.

    Letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, at most
    100 characters, and not all digits (TF Serving reads an all-digit folder as a
    version). No separator can appear, so ``..``, ``.`` and ``a/b`` are refused.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name.isdigit():
        raise UserError(
            f"A {what} uses letters, digits, '_', '.' and '-', starts with a letter or digit, is at "
            f"most 100 characters and is not all digits. Received: {what.replace(' ', '_')}={name!r}"
        )
    return name


# C0 control characters and DEL: a newline or tab in a class name splits or shifts a line of a labels
# file or a table, so every format would name different classes.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_class_names(names: list[str], where: object = None) -> list[str]:
    """Return ``names`` if none holds a control character, else raise ``UserError`` naming it.

    ``where`` is the folder that holds the class folders, named in the message.
    """
    for name in names:
        if not isinstance(name, str) or CONTROL_CHARACTERS.search(name):
            folder = f" (folder {Path(where) / name})" if where is not None and isinstance(name, str) else ""
            raise UserError(
                f"A class name holds a control character such as a newline or tab{folder}, which would "
                "make the labels files of the exports name the wrong classes. Rename the class folder "
                f"without it. Received: class name {name!r}"
            )
    return names
