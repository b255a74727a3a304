"""The ``kerasimg`` console script: one entry point that forwards to every ``python -m kerasimg.*`` CLI."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from kerasimg import commands

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = [
    "fit",
    "predict",
    "evaluate",
    "explain",
    "report",
    "audit",
    "pack",
    "export",
    "zoo",
    "lr_find",
    "tune",
    "compare",
    "bench",
    "models",
]


def test_pyproject_declares_the_kerasimg_script_and_it_resolves():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"kerasimg": "kerasimg.commands:main"}
    module, _, function = scripts["kerasimg"].partition(":")
    assert getattr(importlib.import_module(module), function) is commands.main


@pytest.mark.parametrize("name", EXPECTED)
def test_each_command_forwards_the_rest_of_the_line_and_its_exit_code(name, monkeypatch):
    module = importlib.import_module(commands.COMMANDS[name][0])
    received = []
    monkeypatch.setattr(module, "main", lambda argv: received.append(argv) or 7)
    assert commands.main([name, "--flag", "value", "positional"]) == 7
    assert received == [["--flag", "value", "positional"]]


def test_a_real_command_runs_in_process(tmp_path, capsys):
    assert commands.main(["zoo", "list", "--zoo", str(tmp_path / "zoo")]) == 0
    assert capsys.readouterr().out == f"The zoo in {tmp_path / 'zoo'} is empty.\n"


def test_help_lists_every_command_and_no_command_is_a_usage_error(capsys):
    assert list(commands.COMMANDS) == EXPECTED
    assert commands.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in EXPECTED:
        assert f"\n  {name} " in listed, name
    assert commands.main([]) == 2
    assert capsys.readouterr().err.startswith("usage: kerasimg COMMAND [ARGS...]")


def test_an_unknown_command_names_the_close_ones(capsys):
    assert commands.main(["fti", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown command 'fti'. Did you mean fit? Expected one of: fit, predict,")
    assert err.rstrip().endswith("(kerasimg --help describes them). Received: command='fti'")
    with pytest.raises(commands.UserError, match=r"Unknown command 'nope'.*Received: command='nope'"):
        commands.resolve_command("nope")


def test_readme_documents_the_console_script_with_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("`kerasimg fit|"))
    assert line.startswith("`kerasimg " + "|".join(EXPECTED) + " ...`")


@pytest.mark.parametrize(
    "argv, starts", [(["--help"], "usage: kerasimg COMMAND"), (["fit", "--help"], "usage: kerasimg fit")]
)
def test_help_answers_without_importing_tensorflow(tmp_path, argv, starts):
    """`kerasimg --help` and `kerasimg fit --help`, run as the console script runs them: no TensorFlow."""
    import os
    import subprocess
    import sys

    script = "import sys; from kerasimg.commands import main; main(); print('tensorflow' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake_script = tmp_path / "kerasimg"  # the console script's name is what defers the import
    fake_script.write_text(script)
    done = subprocess.run(
        [sys.executable, str(fake_script), *argv], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.startswith(starts) and done.stdout.rstrip().endswith("False")


def test_every_stored_help_is_what_its_parser_prints():
    """The texts `kerasimg COMMAND --help` prints without building the parser are the parser's own."""
    from kerasimg.docs import stale_help

    assert stale_help() == {}, "a parser changed: run python -m kerasimg.docs"


@pytest.mark.parametrize("name", ["export", "models"])
def test_a_commands_usage_names_it_as_typed_without_rst_markup(name, capsys):
    assert commands.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kerasimg {name} ") and "``" not in out


def test_predicts_help_explains_top_k_and_json(capsys):
    assert commands.main(["predict", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--top-k TOP_K how many classes to show per image" in out
    assert "--json print the results as a JSON list" in out and "the old path" not in out
