"""``python -m kerasimg.docs [--check] [FILE ...]``: README.md and docs/ option tables from the parsers.

It also writes each command's ``--help`` text into ``kerasimg/help/`` (``kerasimg.help_texts``),
which the console script prints without building the parser.

A table sits between two HTML comments that name a CLI module (and a subcommand, if
any) whose ``build_parser()`` defines the flags::

    <!-- options: kerasimg.fit -->
    | option | default | meaning |
    ...
    <!-- end options -->

Without ``--check`` every such table is rewritten from the live parser; with it,
nothing is written and the exit code is 1 if any table differs (a test runs this, so
a flag added to a parser without rerunning the command fails the suite). The
option's help text is the meaning column, so ``--help`` and the README say the same.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from kerasimg.cli import run_cli
from kerasimg.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def documentation_files() -> list[Path]:
    """README.md and the guides under docs/ (MkDocs builds those), where the option tables live."""
    return [README, *sorted((ROOT / "docs").glob("**/*.md"))]


BLOCK = re.compile(
    r"(?P<begin><!-- options: (?P<module>[\w.]+)(?: (?P<command>[\w-]+))? -->\n)"
    r"(?P<table>.*?)"
    r"(?P<end><!-- end options -->)",
    re.DOTALL,
)
REGENERATE = "python -m kerasimg.docs"


def parser_for(module: str, command: str | None = None) -> argparse.ArgumentParser:
    """``module.build_parser()``, or the parser of its subcommand ``command``."""
    try:
        build = importlib.import_module(module).build_parser
    except (ImportError, AttributeError) as error:
        raise UserError(
            f"An options table names a module without build_parser(): {error}. Received: module={module!r}"
        ) from None
    parser = build()
    if command is None:
        return parser
    for action in parser._actions:  # argparse keeps subparsers only on this private list
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    raise UserError(f"{module} has no subcommand {command!r}. Received: command={command!r}")


def _code(text: object) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """Markdown table cells cannot hold a bare ``|`` or a line break."""
    return " ".join(text.split()).replace("|", "\\|")


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        return _code(action.metavar or action.dest)
    names = ", ".join(action.option_strings)
    metavar = f" {action.metavar}" if action.metavar and action.nargs != 0 else ""
    return _code(names + metavar)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""  # flags are off until given; None means the help text says what happens
    if isinstance(action.default, list | tuple):
        return _code(",".join(map(str, action.default)))
    return _code(action.default)


def _meaning(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    parts = []
    if action.help and action.help != argparse.SUPPRESS:
        parts.append(action.help % {**vars(action), "prog": parser.prog})
    if action.choices is not None:
        parts.append("one of " + ", ".join(_code(c) for c in action.choices))
    if action.required and action.option_strings:
        parts.append("required")
    if isinstance(action, argparse._AppendAction) and "repeat" not in (action.help or ""):
        parts.append("repeatable")
    return "; ".join(parts)


def options_table(parser: argparse.ArgumentParser) -> str:
    """The parser's arguments as a Markdown table, in ``--help`` order, without ``--help``."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        cells = (_option(action), _default(action), _meaning(action, parser))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """``text`` with every marked options table regenerated."""

    def block(match: re.Match) -> str:
        table = options_table(parser_for(match["module"], match["command"]))
        return match["begin"] + table + match["end"]

    return BLOCK.sub(block, text)


def stale_tables(text: str) -> list[str]:
    """The markers (``kerasimg.fit``, ``kerasimg.tune compound``) whose table differs from the parser."""
    fresh = {m["begin"]: m["table"] for m in BLOCK.finditer(render(text))}
    return [
        " ".join(filter(None, (m["module"], m["command"])))
        for m in BLOCK.finditer(text)
        if fresh[m["begin"]] != m["table"]
    ]


def stale_help() -> dict[str, str]:
    """``{command: fresh help}`` for each command whose stored ``--help`` text differs from its parser."""
    from kerasimg.commands import COMMANDS
    from kerasimg.help_texts import render_help, stored_help

    fresh = {name: render_help(name, module) for name, (module, _) in COMMANDS.items()}
    return {name: text for name, text in fresh.items() if stored_help(name) != text}


def _refresh_help(check: bool) -> bool:
    """Rewrite (or with ``check``, name) the stale stored help texts; True when any was stale."""
    from kerasimg.files import write_text
    from kerasimg.help_texts import HELP_DIR

    stale = stale_help()
    for name, text in stale.items():
        if check:
            print(f"{HELP_DIR / name}.txt differs from kerasimg {name} --help; run {REGENERATE}")
        else:
            write_text(HELP_DIR / f"{name}.txt", text)
    if stale and not check:
        print(f"{HELP_DIR}: {len(stale)} help text(s) regenerated")
    return bool(stale)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="the Markdown files to update (default: README.md and docs/*.md)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from kerasimg.files import write_text

        named = [Path(f) for f in args.files]
        stale_anywhere = False
        for path in named or documentation_files():
            text = path.read_text(encoding="utf-8")
            if not BLOCK.search(text):
                if named:  # a file asked for by name must hold tables; the defaults may not
                    raise UserError(
                        f"No '<!-- options: MODULE -->' table markers in {path}. Received: {path}"
                    )
                continue
            stale = stale_tables(text)
            stale_anywhere |= bool(stale)
            if args.check:
                for name in stale:
                    print(f"{path}: the options table of {name} differs from its parser; run {REGENERATE}")
                continue
            if stale:
                write_text(path, render(text))
            print(f"{path}: {len(stale)} options table(s) regenerated" if stale else f"{path} is up to date.")
        if not named:
            stale_anywhere |= _refresh_help(check=args.check)
        return 1 if args.check and stale_anywhere else 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
