"""The README and the guides in docs/ say what the code does: the Python it needs, the option tables."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from kerasimg.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
TRAINING_GUIDE = ROOT / "docs" / "training.md"  # where fit's options table lives
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_readme_states_the_python_version_pyproject_requires():
    required = PYPROJECT["project"]["requires-python"]
    assert re.fullmatch(r">=\s*3\.\d+", required), f"a floor such as '>=3.11' is expected, got {required!r}"
    stated = re.findall(r"Python\s*>=\s*(3\.\d+)", README)
    assert stated, "the README's quick start names the minimum Python version"
    assert set(stated) == {required.removeprefix(">=").strip()}, (stated, required)


def test_option_tables_are_what_the_parsers_say():
    from kerasimg import docs

    texts = {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in docs.documentation_files()
    }
    marked = {
        name: [" ".join(filter(None, (m["module"], m["command"]))) for m in docs.BLOCK.finditer(text)]
        for name, text in texts.items()
    }
    assert {name: tables for name, tables in marked.items() if tables} == {
        "docs/data.md": ["kerasimg.pack"],
        "docs/training.md": ["kerasimg.fit"],
        "docs/lr-finder.md": ["kerasimg.lr_find"],
        "docs/evaluation.md": ["kerasimg.evaluate", "kerasimg.explain", "kerasimg.report", "kerasimg.audit"],
        "docs/tuning.md": ["kerasimg.tune compound"],
        "docs/experiments.md": ["kerasimg.compare"],
        "docs/speed.md": ["kerasimg.bench"],
    }
    for name, text in texts.items():
        assert docs.stale_tables(text) == [], f"{name}: run python -m kerasimg.docs"


def test_the_readme_links_every_guide_and_mkdocs_lists_every_page():
    import yaml

    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    assert sorted(page for entry in nav for page in entry.values()) == pages
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", README))
    assert linked == set(pages), set(pages) ^ linked
    assert len(README.splitlines()) < 250, "the README is one screenful of set-up; guides go in docs/"


def test_every_fit_flag_is_a_row_of_the_training_guide_table():
    from kerasimg import docs
    from kerasimg.fit import build_parser

    guide = TRAINING_GUIDE.read_text(encoding="utf-8")
    table = next(m["table"] for m in docs.BLOCK.finditer(guide) if m["module"] == "kerasimg.fit")
    flags = [s for a in build_parser()._actions for s in a.option_strings if s not in ("-h", "--help")]
    assert "--dropout" in flags
    for flag in flags:
        assert f"| `{flag}" in table, flag
    assert "| `--dropout` | `0.2` | dropout rate before the output layer |" in table


def with_new_fit_flag(monkeypatch):
    import kerasimg.fit

    original = kerasimg.fit.build_parser

    def build_parser():
        parser = original()
        parser.add_argument("--mix-ratio", type=float, default=0.1, help="from another branch | a pipe")
        return parser

    monkeypatch.setattr(kerasimg.fit, "build_parser", build_parser)


def test_a_flag_added_to_a_parser_makes_the_guide_stale_until_regenerated(monkeypatch, tmp_path, capsys):
    from kerasimg import docs

    with_new_fit_flag(monkeypatch)
    guide = TRAINING_GUIDE.read_text(encoding="utf-8")
    assert docs.stale_tables(guide) == ["kerasimg.fit"]
    assert docs.main(["--check"]) == 1, "the default files (README.md and docs/) include the guide"
    capsys.readouterr()
    readme = tmp_path / "training.md"
    readme.write_text(guide, encoding="utf-8")
    assert docs.main(["--check", str(readme)]) == 1
    assert "options table of kerasimg.fit differs from its parser; run python -m kerasimg.docs" in (
        capsys.readouterr().out
    )
    assert readme.read_text(encoding="utf-8") == guide, "--check changes nothing"
    assert docs.main([str(readme)]) == 0
    updated = readme.read_text(encoding="utf-8")
    assert "| `--mix-ratio` | `0.1` | from another branch \\| a pipe |" in updated
    assert docs.main(["--check", str(readme)]) == 0
    assert updated.replace("| `--mix-ratio` | `0.1` | from another branch \\| a pipe |\n", "") == guide


def test_a_table_marker_naming_no_parser_is_a_clear_error(tmp_path, capsys):
    from kerasimg import docs

    readme = tmp_path / "README.md"
    readme.write_text("<!-- options: kerasimg.errors -->\n<!-- end options -->\n", encoding="utf-8")
    assert docs.main(["--check", str(readme)]) == 2
    assert "names a module without build_parser()" in capsys.readouterr().err
    with pytest.raises(UserError, match="kerasimg.tune has no subcommand 'nope'"):
        docs.parser_for("kerasimg.tune", "nope")
