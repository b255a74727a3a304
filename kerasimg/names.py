"""The one rule for names that become folders: zoo models, tuning projects, experiments."""

from __future__ import annotations

import re

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
