"""``tune recipe``: a KerasTuner search whose trials are fit runs, its winner a ``fit --config`` file."""

import json

import pytest
from helpers import make_separable

from kerasimg import tune
from kerasimg.errors import UserError
from kerasimg.training.config import FitConfig
from kerasimg.tuning.recipe_space import RecipeSpace, fit_settings, read_recipe_space

VALUES = dict(
    lr=0.01, weight_decay=1e-4, label_smoothing=0.1, augment="rrc,flip", crop_scale=0.25,
    warmup_epochs=1.0, optimizer="adamw", schedule="full",
)  # fmt: skip


def test_a_trials_values_become_fit_settings_with_the_crop_scale_in_its_augmentation():
    settings = fit_settings(VALUES)
    assert settings["augment"] == "rrc:0.25,flip"
    assert fit_settings({**VALUES, "augment": "flip"})["augment"] == "flip"  # no crop: no scale
    FitConfig(backbone="small_cnn", data="scenes", weights="none", **settings).validate()


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
