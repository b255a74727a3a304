"""``kerasimg COMMAND [ARGS...]``: one entry point for every ``python -m kerasimg.*`` command.

``kerasimg fit --backbone small_cnn`` runs ``python -m kerasimg.fit --backbone small_cnn``:
the rest of the command line goes to that module's ``main`` unchanged, and its exit code
is the command's. pip installs it as a console script (``[project.scripts]`` in
pyproject.toml); ``python -m kerasimg COMMAND`` is the same without the script.
"""

from __future__ import annotations

import difflib
import importlib
import sys

import kerasimg
from kerasimg import cli
from kerasimg.cli import EXIT_USER_ERROR
from kerasimg.errors import UserError
from kerasimg.help_texts import stored_help

# name -> (module whose main(argv) runs it, one line for the command list)
COMMANDS = {
    "fit": ("kerasimg.fit", "fine-tune a backbone on your images or the built-in demo set"),
    "predict": ("kerasimg.predict", "classify images with an exported model, in plain TensorFlow"),
    "evaluate": ("kerasimg.evaluate", "predict any split of a run again: per-image table, worst mistakes"),
    "explain": ("kerasimg.explain", "Grad-CAM heat maps: where a run's model sees its class"),
    "report": ("kerasimg.report", "one self-contained HTML page per run, or runs side by side"),
    "audit": ("kerasimg.audit", "find mislabelled images, duplicates across splits and outliers"),
    "pack": ("kerasimg.pack", "write a data set's splits into sharded record files that fit reads"),
    "export": ("kerasimg.export", "export a finished run into the model zoo"),
    "zoo": ("kerasimg.zoo", "list, show or remove zoo models; print TF Serving's config"),
    "lr_find": ("kerasimg.lr_find", "ramp the learning rate for a few steps and suggest one"),
    "tune": ("kerasimg.tune", "search EfficientNet's compound-scaling coefficients"),
    "compare": ("kerasimg.compare", "run a plan of experiments into one results table"),
    "bench": ("kerasimg.bench", "measure images/s per backbone, mode and precision"),
    "models": ("kerasimg.model_list", "list the registered backbones"),
}
# Commands that import TensorFlow themselves, only when they need it (`models list` reads static facts).
LIGHT = {"models"}
PROG = "kerasimg"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: {PROG} COMMAND [ARGS...]   ({PROG} COMMAND --help for a command's options)",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()),
        "",
        f"{PROG} COMMAND ... is python -m kerasimg.COMMAND ... (models: python -m kerasimg.models).",
    ]
    return "\n".join(lines)


def resolve_command(name: str):
    """The ``main(argv)`` function of command ``name``; an unknown name lists the close ones."""
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise UserError(
            f"Unknown command {name!r}.{hint} Expected one of: {', '.join(COMMANDS)} "
            f"({PROG} --help describes them). Received: command={name!r}"
        )
    if name not in LIGHT:
        kerasimg.load_library()  # TensorFlow, quietly, before the command's module imports it
    return importlib.import_module(COMMANDS[name][0]).main


def main(argv: list[str] | None = None) -> int:
    """Run ``kerasimg COMMAND ARGS...``; return the command's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return EXIT_USER_ERROR
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"{PROG} {kerasimg.__version__}")
        return 0
    if len(argv) == 2 and argv[1] in ("-h", "--help") and (text := stored_help(argv[0])) is not None:
        print(text, end="")  # rendered from the parser ahead of time (kerasimg.help_texts)
        return 0
    try:
        command = resolve_command(argv[0])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    cli.invoked_as = f"{PROG} {argv[0]}"  # the command's usage line says "kerasimg export", as typed
    try:
        return command(argv[1:])  # each command turns its own errors into one line and an exit code
    finally:
        cli.invoked_as = None
