"""kerasimg.fit end to end on tiny data: the run directory, learning, resume, errors."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from helpers import make_separable, tiny_config

import kerasimg.fit as fit_cli
from kerasimg.errors import UserError
from kerasimg.training import fit
from kerasimg.training.reports import read_history

RUN_FILES = [
    "config.json",
    "history.csv",
    "curves.png",
    "confusion.png",
    "metrics.json",
    "model.keras",
    "skipped_files.txt",
    "predictions.csv",
    "reliability.png",
    "mistakes.png",
]


def test_fit_cli_writes_a_complete_run_directory(tiny_scenes, tmp_path, capsys):
    out = tmp_path / "run"
    code = fit_cli.main(
        [
            "--backbone",
            "small_cnn",
            "--weights",
            "none",
            "--data",
            str(tiny_scenes),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--image-size",
            "32",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["schedule"] == "full", "--weights none switches a linear probe to full"
    assert config["arguments"]["schedule"] == "linear-probe", "the arguments are kept as given"
    assert config["class_names"] == ["buildings", "forest", "glacier", "mountain", "sea", "street"]
    assert config["arguments"]["seed"] == 0 and "tensorflow" in config["versions"]
    assert config["resolved"]["image_size"] == 32 and config["parameters"]["total"] > 0
    assert [(p["start"], p["end"], p["unfrozen"]) for p in config["resolved"]["phases"]] == [(0, 2, "all")]
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    # The epoch's time and learning rate are kept in history.csv, and not printed beside the metrics.
    assert float(rows[0]["epoch_seconds"]) > 0 and float(rows[0]["lr"]) > 0
    assert "val_accuracy:" in printed and "epoch_seconds" not in printed and " lr:" not in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_examples"] == 18 and 0 <= metrics["test_accuracy"] <= 1
    assert set(metrics["per_class"]) == set(config["class_names"])
    assert np.sum(metrics["confusion_matrix"]) == 18
    # The per-image table agrees with the summary numbers it should reproduce.
    table = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(table) == 18 and {r["true"] for r in table} == set(config["class_names"])
    assert np.mean([r["true"] == r["predicted"] for r in table]) == pytest.approx(metrics["test_accuracy"])
    assert np.mean([float(r["loss"]) for r in table]) == pytest.approx(metrics["test_loss"], abs=1e-5)
    assert all(abs(sum(float(r[f"p_{c}"]) for c in config["class_names"]) - 1) < 1e-4 for r in table)
    assert metrics["top_k"] == 2 and metrics["test_top_k_accuracy"] >= metrics["test_accuracy"]
    assert 0 <= metrics["test_ece"] <= 1 and len(metrics["calibration"]) == 15
    assert metrics["test_balanced_accuracy"] == pytest.approx(
        np.mean([c["recall"] for c in metrics["per_class"].values()])
    )
    assert [c["support"] for c in metrics["per_class"].values()] == [3] * 6
    assert keras.saving.load_model(out / "model.keras").output_shape == (None, 6)
    assert f"Test accuracy {metrics['test_accuracy']:.2%}" in printed
    assert "linear probe would train a head on random features" in printed
    assert metrics["selected_on_test"] is False and "--val-from test" not in printed, "validated on train"


def test_loss_falls_and_accuracy_rises_on_a_separable_set(tmp_path):
    data = make_separable(tmp_path / "data")
    result = fit(tiny_config(data, tmp_path / "run", epochs=5, lr=3e-3, augment="none"), log=lambda *_: None)
    rows = read_history(tmp_path / "run" / "history.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["accuracy"] >= rows[0]["accuracy"]
    assert result.test_accuracy >= 0.75


def test_a_bad_data_path_is_the_only_line(tmp_path):
    """The --weights none note waits until the data is read, so a bad --data is not preceded by it."""
    logged = []
    with pytest.raises(UserError, match="The data path does not exist"):
        fit(tiny_config(tmp_path / "missing", tmp_path / "run"), log=logged.append)
    assert logged == []
    assert not (tmp_path / "run").exists()


def test_an_existing_run_directory_is_never_overwritten(tiny_scenes, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run.*--resume"):
        fit(tiny_config(tiny_scenes, out), log=lambda *_: None)
    assert (out / "config.json").read_text() == "{}"


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--epochs", "0", "--epochs must be at least 1"),
        ("--lr", "-1", "--lr must be positive"),
        ("--backbone", "resnet5", "Did you mean resnet50"),
    ],
)
def test_bad_arguments_exit_2_with_the_value(flag, value, message, capsys):
    assert fit_cli.main([flag, value, "--weights", "none"]) == 2
    assert message in capsys.readouterr().err
