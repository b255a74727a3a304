"""The learning-rate range test: the ramp, the rules that read a rate off it, and what it leaves behind."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from helpers import make_separable

from kerasimg.errors import UserError
from kerasimg.training.lr_finder import (
    check_range,
    find_learning_rate,
    longest_descent,
    ramp,
    smooth,
    suggest,
)


def test_the_ramp_is_exponential_from_min_to_max():
    rates = ramp(1e-6, 1.0, 61)
    assert rates[0] == pytest.approx(1e-6) and rates[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(rates[1:] / rates[:-1], 10 ** (6 / 60))  # one constant factor a step


def test_the_rules_read_the_valley_of_a_known_curve():
    rates = ramp(1e-5, 10.0, 120)
    x = np.log10(rates)
    # Flat, a fall centred at 1e-3 (steepest there), a floor, then an explosion past 1e-1.
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 4)) + np.where(x > -1, (x + 1) ** 2 * 3, 0)
    steepest = suggest(rates, loss, "steepest")
    assert 3e-4 < steepest < 3e-3, steepest
    lowest = rates[np.argmin(loss)]
    assert suggest(rates, loss, "minimum") == pytest.approx(lowest / 10)
    # Smoothing leaves the start where it is (bias corrected) and damps a spike.
    spiky = np.ones(50)
    spiky[25] = 10
    smoothed = smooth(spiky)
    assert smoothed[0] == pytest.approx(1.0) and smoothed.max() < 1.5


def test_valley_is_not_fooled_by_a_fall_at_the_start_of_the_ramp():
    """A measured failure of ``steepest``: the loss of the first batches fell by chance at 1e-7,
    where nothing is learnt, and steepest read the rate there (the run stayed at chance)."""
    rates = ramp(1e-7, 1.0, 100)
    x = np.log10(rates)
    noise = np.random.default_rng(0).normal(0, 0.1, 100)
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -0.5, (x + 0.5) ** 2 * 8, 0) + noise
    loss[:6] += np.linspace(1.5, 0, 6)
    smoothed = smooth(loss)
    assert suggest(rates, smoothed, "steepest") < 1e-6  # what went wrong
    assert 1e-4 < suggest(rates, smoothed, "valley") < 1e-2  # inside the real fall
    start, end = longest_descent([3, 9, 2, 1, 8, 0])  # 9 > 2 > 1 > 0: four values, ending at 5
    assert (start, end) == (2, 5)


@pytest.mark.parametrize(
    "min_lr, max_lr, steps, message",
    [
        (0.0, 1.0, 100, "min_lr must be a positive number. Received: min_lr=0.0"),
        (1e-3, 1e-3, 100, "max_lr must be a number above min_lr=0.001. Received: max_lr=0.001"),
        (1e-3, float("nan"), 100, "Received: max_lr=nan"),
        (1e-7, 1.0, 5, "steps must be an integer of at least 10. Received: steps=5"),
    ],
)
def test_a_range_that_cannot_run_is_one_line_naming_the_value(min_lr, max_lr, steps, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_range(min_lr, max_lr, steps)


def test_the_test_only_looks_and_stops_when_the_loss_explodes(tmp_path):
    from kerasimg.data import image_dataset, load_data
    from kerasimg.models import build_classifier
    from kerasimg.training.recipe import compile_classifier

    data = load_data(str(make_separable(tmp_path / "data")), log=lambda *_: None)
    keras.utils.set_random_seed(0)
    model = build_classifier("small_cnn", 2, 32, "none")
    compile_classifier(model, 1e-3)
    before = [np.array(w) for w in model.weights]
    train = image_dataset(data.train, 32, 8, training=True, augment="none")
    finding = find_learning_rate(model, train, min_lr=1e-5, max_lr=1e4, steps=80)
    assert finding.diverged and len(finding.rates) < 80, "a rate of 1e4 blows the loss up before the end"
    assert 1e-5 < finding.suggestion < finding.rates[-1], finding.suggestion
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, np.array(new))
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3), "the model's rate is back"


def test_lr_find_writes_the_curve_and_prints_a_rate_inside_the_ramp(tmp_path, capsys):
    import kerasimg.lr_find as cli

    data = make_separable(tmp_path / "data")
    flags = ["--data", str(data), "--backbone", "small_cnn", "--weights", "none", "--image-size", "32"]
    flags += [
        "--batch-size",
        "8",
        "--steps",
        "40",
        "--min-lr",
        "1e-5",
        "--max-lr",
        "1",
        "--out",
        str(tmp_path / "lr"),
    ]
    assert cli.main(flags) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert f"Suggested learning rate: {record['suggestion']:.3g} (valley rule" in printed
    rows = list(csv.DictReader((tmp_path / "lr" / "lr_find.csv").open()))
    assert len(rows) == len(record["rates"]) and float(rows[0]["lr"]) == pytest.approx(1e-5)
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 10_000
    assert 1e-5 < record["suggestion"] < 1


def test_fit_with_lr_find_trains_with_the_suggested_rate_and_records_it(tmp_path):
    from helpers import tiny_config

    from kerasimg.training import fit

    rates = []

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    data = make_separable(tmp_path / "data")
    fit(tiny_config(data, tmp_path / "run", epochs=1, lr_find=True), callbacks=[Spy()], log=lambda *_: None)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    found = record["lr_find"]
    assert found["rule"] == "valley" and found["min_lr"] < found["suggestion"] < found["max_lr"]
    assert record["arguments"]["lr"] == found["suggestion"] and record["arguments"]["lr_find"] is True
    assert rates == [pytest.approx(found["suggestion"])], "the optimizer trained at the suggested rate"
    assert (tmp_path / "run" / "lr_find.png").is_file()


def test_lr_find_is_refused_on_several_processes():
    from kerasimg.errors import ArgumentError
    from kerasimg.training import FitConfig

    with pytest.raises(ArgumentError, match="lr_find runs on one process"):
        FitConfig(backbone="small_cnn", weights="none", lr_find=True, strategy="multihost").resolve()
