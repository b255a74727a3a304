"""The README says what the code does: the Python it needs, its option tables, its commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_readme_states_the_python_version_pyproject_requires():
    required = PYPROJECT["project"]["requires-python"]
    assert re.fullmatch(r">=\s*3\.\d+", required), f"a floor such as '>=3.11' is expected, got {required!r}"
    stated = re.findall(r"Python\s*>=\s*(3\.\d+)", README)
    assert stated, "the README's quick start names the minimum Python version"
    assert set(stated) == {required.removeprefix(">=").strip()}, (stated, required)
