"""The documented Python API: the README's "From Python" block runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import pytest

import kerasimg
from kerasimg.errors import ArgumentError, UserError
from kerasimg.training.reports import read_history

README = Path(__file__).resolve().parents[1] / "README.md"


def from_python_block() -> str:
    section = README.read_text(encoding="utf-8").split("## From Python", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_readmes_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(from_python_block(), "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "['resnet50', 'densenet201', 'inception_resnet_v2', 'convnext_tiny']" in printed
    assert "(None, 32, 32, 3) (None, 6)" in printed
    result, more = namespace["result"], namespace["more"]
    assert result.exported == (tmp_path / "saved_models" / "scenes-demo" / "1").resolve()
    answers = list(kerasimg.predict("scenes-demo", namespace["photos"], top_k=2))
    assert len(answers) == 3 and all(len(a["top"]) == 2 for a in answers)
    # A larger epochs extends the finished run: one history, the new length resolved and evaluated.
    assert more.run_dir == result.run_dir and more.best_epoch in (1, 2)
    assert [int(r["epoch"]) for r in read_history(result.run_dir / "history.csv")] == [0, 1]
    assert json.loads((result.run_dir / "config.json").read_text())["resolved"]["epochs"] == 2
    # Importing kerasimg is enough for Keras to read a kerasimg model file.
    loaded = keras.saving.load_model(result.run_dir / "model.keras")
    assert loaded.output_shape == (None, 6)


def test_library_errors_name_arguments_and_the_cli_names_flags(capsys):
    with pytest.raises(ArgumentError, match=r"^epochs must be at least 1. Received: epochs=0$"):
        kerasimg.fit(backbone="small_cnn", weights="none", epochs=0)
    with pytest.raises(UserError, match=r"Unknown arguments \['batchsize'\]"):
        kerasimg.fit(batchsize=3)
    import kerasimg.fit as fit_cli

    assert fit_cli.main(["--epochs", "0", "--weights", "none"]) == 2
    assert "error: --epochs must be at least 1. Received: --epochs 0" in capsys.readouterr().err


def test_load_model_explains_a_folder_without_a_model(tmp_path):
    with pytest.raises(UserError, match="holds no model.keras"):
        kerasimg.load_model(tmp_path)
