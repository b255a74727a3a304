"""One description of a setting: a dataclass field whose metadata holds its help, choices and metavar.

``FitConfig``'s fields are written once, with :func:`setting`; from them
:func:`add_arguments` builds the CLI flags (``python -m kerasimg.fit``), the plan and
``--config`` schema follows their annotations (``tomlfile.kind_of``), the README's
options table is generated from that parser (``kerasimg.docs``), and
:func:`check_types` refuses a keyword argument of the wrong type in one line, as the
CLI's parser does. Adding a setting is adding one field.

A field's flag is its name with dashes (``batch_size`` -> ``--batch-size``); a boolean
that defaults to False is a switch (``--train-bn``), one that defaults to True is
turned off by ``--no-NAME``. An ``X | None`` field defaults to None, which its help
text explains.
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
import os

from kerasimg.errors import ArgumentError

# annotation -> (accepts, what is expected)
_TYPES = {
    "int": (
        lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
        "must be an integer such as 3",
    ),
    "float": (
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
        "must be a number such as 0.1",
    ),
    "str": (lambda v: isinstance(v, str), "must be a string"),
    "bool": (lambda v: isinstance(v, bool), "must be True or False"),
}


def setting(
    default,
    help: str,
    *,
    choices=None,
    metavar: str | None = None,
    path: bool = False,
) -> dataclasses.Field:
    """A dataclass field that describes a setting; ``path``: an ``os.PathLike`` is accepted as its string."""
    metadata = {"help": help, "choices": None if choices is None else tuple(choices), "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata | {"path": path})


def base_type(field: dataclasses.Field) -> tuple[str, bool]:
    """(``"int"``, optional) for a field annotated ``int | None`` (annotations are strings here)."""
    annotation = field.type if isinstance(field.type, str) else field.type.__name__
    optional = annotation.endswith(" | None")
    return annotation.removesuffix(" | None").strip(), optional


def schema(settings: type, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """The TOML schema (key -> ``tomlfile`` kind) of the dataclass ``settings``' fields."""
    from kerasimg.tomlfile import kind_of

    return {f.name: kind_of(f.type) for f in dataclasses.fields(settings) if f.name not in exclude}


def flag(field: dataclasses.Field) -> str:
    name = field.name.replace("_", "-")
    if base_type(field)[0] == "bool" and field.default is True:
        return f"--no-{name}"
    return f"--{name}"


def add_arguments(parser: argparse.ArgumentParser, settings: type) -> None:
    """One flag per field of the dataclass ``settings``, in field order."""
    for field in dataclasses.fields(settings):
        meta = field.metadata
        if "help" not in meta:
            continue  # not a setting (no CLI flag)
        kind, _ = base_type(field)
        if kind == "bool":
            action = "store_false" if field.default else "store_true"
            parser.add_argument(flag(field), dest=field.name, action=action, help=meta["help"])
            continue
        parser.add_argument(
            flag(field),
            type={"int": int, "float": float}.get(kind),
            default=field.default,
            choices=meta["choices"],
            metavar=meta["metavar"],
            help=meta["help"],
        )


def check_types(values) -> None:
    """Refuse a field of the dataclass instance ``values`` whose value is not of its annotated type.

    One ``ArgumentError`` naming the argument; a path-like value of a ``path`` field
    becomes its string, and a NumPy integer a Python ``int``.
    """
    for field in dataclasses.fields(values):
        value = getattr(values, field.name)
        kind, optional = base_type(field)
        if kind not in _TYPES or (optional and value is None):
            continue
        if field.metadata.get("path") and isinstance(value, os.PathLike):
            setattr(values, field.name, os.fspath(value))
            continue
        accepts, expected = _TYPES[kind]
        if not accepts(value):
            raise ArgumentError(field.name, expected + (" (or None)" if optional else ""), value)
        if kind == "int" and type(value) is not int:
            setattr(values, field.name, int(value))  # numpy's integers, which config.json cannot hold
