"""``tune recipe``: a KerasTuner search whose trials are fit runs, its winner a ``fit --config`` file."""

import json
from types import SimpleNamespace

import pytest
from helpers import make_separable

from kerasimg import tune
from kerasimg.errors import UserError
from kerasimg.training.config import FitConfig
from kerasimg.tuning.oracle import OBJECTIVE
from kerasimg.tuning.recipe_results import trial_rows
from kerasimg.tuning.recipe_search import BaseTraining, RecipeSearch
from kerasimg.tuning.recipe_space import RecipeSpace, fit_settings, read_recipe_space

VALUES = dict(
    lr=0.01, weight_decay=1e-4, label_smoothing=0.1, augment="rrc,flip", crop_scale=0.25,
    warmup_epochs=1.0, optimizer="adamw", lr_schedule="cosine", schedule="full",
)  # fmt: skip


def test_a_trials_values_become_fit_settings_with_the_crop_scale_in_its_augmentation():
    settings = fit_settings(VALUES)
    assert settings["augment"] == "rrc:0.25,flip"
    assert fit_settings({**VALUES, "augment": "flip"})["augment"] == "flip"  # no crop: no scale
    assert "tta" not in settings, "a trial that flips keeps the base recipe's test-time flips"
    assert fit_settings({**VALUES, "augment": "none"})["tta"] == "none", "never trained mirrored"
    FitConfig(backbone="small_cnn", data="scenes", weights="none", **settings).validate()


def _trial(trial_id, values, val_accuracy, epochs):
    metrics = {OBJECTIVE: val_accuracy, "epochs_trained": epochs}
    return SimpleNamespace(
        trial_id=trial_id,
        status="COMPLETED",
        hyperparameters=SimpleNamespace(values=values),
        metrics=SimpleNamespace(exists=metrics.__contains__, get_last_value=metrics.get),
    )


def test_a_tie_on_validation_goes_to_a_preset_and_only_a_better_draw_replaces_it():
    presets = RecipeSpace().preset_points(pretrained=False)
    draw = {**presets["seed"], "lr": 0.02, "optimizer": "sgd"}
    tied = {"1": _trial("1", draw, 1.0, 10), "0": _trial("0", presets["seed"], 1.0, 20)}
    rows = trial_rows(SimpleNamespace(trials=tied), presets)
    assert [(r["trial"], r["preset"], r.get("best")) for r in rows] == [("0", "seed", "*"), ("1", "", None)]
    better = {
        **tied,
        "0": _trial("0", presets["seed"], 0.99, 20),
        "2": _trial("2", presets["modern"], 1.0, 30),
    }
    rows = trial_rows(SimpleNamespace(trials=better), presets)
    assert [(r["trial"], r["preset"]) for r in rows] == [("2", "modern"), ("1", ""), ("0", "seed")]
    assert trial_rows(SimpleNamespace(trials=tied))[0]["trial"] == "1", "no presets: the cheaper trial"


def test_auto_searches_by_hyperband_with_pretrained_weights_and_by_bayes_from_scratch():
    """Hyperband's shortest budgets leave from-scratch recipes at chance; a chosen tuner is kept."""
    assert RecipeSearch(training=BaseTraining(weights="imagenet")).tuner == "hyperband"
    assert RecipeSearch(training=BaseTraining(weights="none")).tuner == "bayesian"
    assert RecipeSearch(tuner="hyperband", training=BaseTraining(weights="none")).tuner == "hyperband"
    with pytest.raises(UserError, match="--tuner must be one of auto, hyperband, bayesian"):
        RecipeSearch(tuner="grid").validate()


@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])
def test_the_first_trials_are_the_presets_then_the_tuners_own_draws(tmp_path, tuner):
    """Seed and modern come first as fit settings (weight decay 0 at the space's lowest); a resumed
    oracle, which has tried them, draws new points."""
    search = RecipeSearch(
        directory=str(tmp_path), tuner=tuner, training=BaseTraining(weights="none"),
        space=RecipeSpace(weight_decay=(1e-5, 0.1)),
    )  # fmt: skip
    oracle = search.oracle()
    oracle._set_project_dir(str(tmp_path), "recipe")
    drawn = [oracle.create_trial(f"t{i}").hyperparameters.values for i in range(3)]
    seed, modern, third = (fit_settings(values) for values in drawn)
    assert seed == dict(
        lr=1e-3, weight_decay=1e-5, label_smoothing=0.0, augment="flip", warmup_epochs=0.0,
        optimizer="adam", lr_schedule="constant", schedule="full",
    )  # fmt: skip
    assert modern == dict(
        lr=1e-3, weight_decay=0.05, label_smoothing=0.1, augment="rrc:0.08,flip", warmup_epochs=1.0,
        optimizer="adamw", lr_schedule="cosine", schedule="full",
    )  # fmt: skip
    assert third not in (seed, modern)
    again = search.oracle()
    again._set_project_dir(str(tmp_path), "recipe")
    again._tried_so_far = set(oracle._tried_so_far)  # what a reloaded oracle.json holds
    assert fit_settings(again.create_trial("t3").hyperparameters.values) not in (seed, modern)


def test_the_cli_gives_every_trial_its_validation_split(tmp_path):
    args = tune.build_parser().parse_args(["recipe", "--weights", "none", "--val-split", "0.3"])
    search = tune.recipe_search_from_args(args)
    assert search.training.fit_config(VALUES, 2, tmp_path).val_split == 0.3


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (dict(augment=("flip,mixup:0.2",)), "mixes labels"),
        (dict(schedule=("probe-then-last:2,1",)), "schedule must be among"),
        (dict(lr=(0.0, 0.1)), "lr must be positive"),
        (dict(lr=(1e-3, 1e-2, 1e-1)), r"lr is \[low, high\] or one value"),
        (dict(optimizer=("rmsprop",)), "optimizer must be among"),
    ],
)
def test_a_bad_space_is_one_line_before_any_trial(space, message):
    with pytest.raises(UserError, match=message):
        RecipeSpace(**space).validate(pretrained=True)


def test_a_space_file_typo_names_its_line(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('lr = [1e-4, 1e-2]\naugmnet = ["flip"]\n')
    with pytest.raises(
        UserError, match=r"space\.toml, line 2: unknown key 'augmnet'.*did you mean 'augment'"
    ):
        read_recipe_space(path)


def test_hyperband_on_cached_probes_writes_a_winner_that_fit_accepts_and_resumes(
    tmp_path, small_cnn_weights, capsys, monkeypatch
):
    """Head-only trials on pretrained weights read one feature cache; the winner is a --config file
    equal to its trial's own run; the same command again trains nothing; other settings are refused."""
    monkeypatch.chdir(tmp_path)
    data = make_separable(tmp_path / "data", per_class=6)
    (tmp_path / "space.toml").write_text('schedule = ["linear-probe"]\naugment = ["flip"]\n')
    argv = ["recipe", "--backbone", "small_cnn", "--weights", small_cnn_weights, "--data", str(data)]
    argv += ["--image-size", "32", "--batch-size", "8", "--epochs", "2", "--factor", "2"]
    argv += ["--space", "space.toml"]
    assert tune.main(argv) == 0
    said = capsys.readouterr().out
    project = tmp_path / "tuning" / "recipe"
    trials = sorted(project.glob("trial_*/run/metrics.json"))
    assert len(trials) >= 3 and said.count("Trial ") == len(trials)
    rows = (project / "results.csv").read_text().splitlines()
    assert rows[1].startswith("*,") and len(rows) == len(trials) + 1
    best = FitConfig.from_file(project / "best.toml")
    winner = rows[1].split(",")[1]
    recorded = json.loads((project / f"trial_{winner}" / "run" / "config.json").read_text())["arguments"]
    for key in ("lr", "weight_decay", "label_smoothing", "augment", "schedule", "epochs", "weights"):
        assert getattr(best, key) == recorded[key], key
    assert recorded["early_stop"] == 3 and not best.early_stop, "the winner trains its whole budget"
    assert f"python -m kerasimg.fit --config {project / 'best.toml'}" in said
    features = [p for p in project.glob("trial_*/run/features/train-*.npy") if ".labels" not in p.name]
    caches = {path.stat().st_ino for path in features}
    assert len(features) == len(trials) and len(caches) == 1, "one extraction served every probe"

    assert tune.main(argv) == 0  # resumes: every trial is done, nothing trains again
    again = capsys.readouterr().out
    assert "already done" in again and "Trial " not in again
    assert tune.main([*argv, "--patience", "1"]) == 2  # a user error, one line
    assert "started with other settings (patience: 3 then, 1 now)" in capsys.readouterr().err
    # A time budget already spent starts no trial in a new project, and says how to go on.
    assert tune.main([*argv, "--project", "late", "--max-minutes", "0"]) == 1
    late = capsys.readouterr()
    assert "Trial " not in late.out and "Stopped starting trials after --max-minutes 0" in late.out
    assert "no trial completed" in late.err


def test_a_chief_and_two_workers_run_each_recipe_trial_once_and_write_the_winner(tmp_path, monkeypatch):
    """``tune recipe --workers 2`` as the CLI runs it, with trials that score their rate in a second
    (tests/fake_recipe_trials.py): the workers train every trial once, the chief writes the files."""
    import csv
    import os
    import sys
    from pathlib import Path

    import kerasimg.tuning.workers as workers_module

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    run_local = workers_module.run_local
    monkeypatch.setattr(
        workers_module, "run_local", lambda *a, **k: run_local(*a, **k, module="fake_recipe_trials")
    )
    directory = tmp_path / "tuning"
    argv = ["recipe", "--weights", "none", "--tuner", "bayesian", "--trials", "5", "--epochs", "2"]
    argv += ["--directory", str(directory), "--project", "dist", "--workers", "2"]
    assert tune.main(argv) == 0
    markers = [p.name for p in (directory / "ran").iterdir()]
    assert sorted(m.split(".")[0] for m in markers) == sorted({m.split(".")[0] for m in markers})
    assert len(markers) == 5 and all(".worker" in m for m in markers)  # once each, never the chief
    assert len({m.split(".")[1] for m in markers}) == 2  # both workers took trials
    with open(directory / "dist" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and all(r["status"] == "COMPLETED" for r in rows)
    assert "lr = " in (directory / "dist" / "best.toml").read_text()
    # Run again: nothing is left, so no process starts, and the same winner is shown.
    monkeypatch.setattr(workers_module, "run_local", lambda *a, **k: pytest.fail("started workers"))
    assert tune.main(argv) == 0


def test_a_search_past_its_deadline_stops_each_worker_and_lets_the_chief_end(tmp_path):
    """KerasTuner's chief ends once no worker is left; a deadline's STOPPED must release the worker."""
    import time

    search = RecipeSearch(directory=str(tmp_path), tuner="bayesian", training=BaseTraining(weights="none"))
    oracle = search.oracle()
    oracle._set_project_dir(str(tmp_path), "recipe")
    assert oracle.create_trial("worker0").status == "RUNNING"
    oracle.deadline = time.time() - 1
    assert oracle.create_trial("worker0").status == "STOPPED" and not oracle.tuner_ids
