"""``fit --config run.toml`` / ``kerasimg.fit(config=...)``: a TOML file of fit settings, flags on top.

Nothing here trains: the driver is replaced by a stub that keeps the ``FitConfig`` it is
handed, and ``config.json``'s contents come from ``run_record`` on a model that is only built.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import kerasimg
import kerasimg.api
import kerasimg.fit as fit_cli
from kerasimg.errors import ArgumentError, UserError
from kerasimg.experiments.plans import load_plan
from kerasimg.training import multihost
from kerasimg.training.config import FitConfig

TRAINING_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "training.md"


class Handed(Exception):
    """Raised by the stub driver, carrying the FitConfig that would have trained."""

    def __init__(self, config: FitConfig):
        self.config = config


@pytest.fixture
def driver(monkeypatch):
    """kerasimg.fit's driver, replaced: it raises ``Handed`` with the config instead of training."""

    def stub(config, **_):
        raise Handed(config)

    monkeypatch.setattr(kerasimg.api, "fit_config", stub)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


RUN_TOML = """\
# a run's settings
backbone = "small_cnn"
weights = "none"
epochs = 3
batch_size = 16
lr = 0.005
image_size = 32
train_bn = true
feature_cache = true
recipe = "modern"
early_stop = 2
"""
IN_FILE = dict(
    backbone="small_cnn",
    weights="none",
    epochs=3,
    batch_size=16,
    lr=0.005,
    image_size=32,
    train_bn=True,
    feature_cache=True,
    recipe="modern",
    early_stop=2,
)


def test_the_files_values_reach_the_fitconfig_and_its_path_is_kept(tmp_path):
    path = write(tmp_path, RUN_TOML)
    assert FitConfig.from_file(path) == FitConfig(**IN_FILE, config=str(path))


def test_flags_override_the_file_and_untyped_flags_do_not(tmp_path, driver):
    path = write(tmp_path, RUN_TOML)
    with pytest.raises(Handed) as handed:
        fit_cli.main(["--config", str(path), "--epochs", "1", "--no-feature-cache", "--out", str(tmp_path)])
    config = handed.value.config
    assert (config.epochs, config.feature_cache, config.out) == (1, False, str(tmp_path))  # typed
    # Not typed: the file's batch_size (16), not the parser's default (32), and so on.
    typed = {"epochs": 1, "feature_cache": False, "out": str(tmp_path)}
    assert config == FitConfig(**IN_FILE | typed, config=str(path))


def test_the_api_takes_config_with_keywords_on_top(tmp_path, driver):
    path = write(tmp_path, RUN_TOML)
    with pytest.raises(Handed) as handed:
        kerasimg.fit(config=path, epochs=2, recipe="seed")
    assert handed.value.config == FitConfig(**IN_FILE | {"epochs": 2, "recipe": "seed"}, config=str(path))


def test_a_bad_value_in_the_file_is_fine_when_a_flag_replaces_it(tmp_path, driver):
    path = write(tmp_path, 'backbone = "small_cnn"\nepochs = 0\n')
    with pytest.raises(Handed) as handed:
        fit_cli.main(["--config", str(path), "--epochs", "4"])
    assert handed.value.config.epochs == 4
    with pytest.raises(ArgumentError, match=r"^epochs must be at least 1\. Received: epochs=-1$"):
        FitConfig.from_file(path, epochs=-1)  # the override's own error, as without a file


@pytest.mark.parametrize(
    "text, message",
    [
        # A typo: the key, its line and the closest key.
        (
            'backbone = "small_cnn"\n\nepoch = 3\n',
            r"run\.toml, line 3: unknown key 'epoch' at the top level; did you mean 'epochs'\? Known keys: ",
        ),
        (
            'batch-size = 8\nbackbone = "small_cnn"\n',
            r"run\.toml, line 1: unknown key 'batch-size' at the top level; did you mean 'batch_size'\?",
        ),
        # A wrong type names the key and its line.
        ('backbone = "small_cnn"\nepochs = "3"\n', r"run\.toml, line 2: 'epochs' must be an integer"),
        ("train_bn = 1\n", r"run\.toml, line 1: 'train_bn' must be true or false\. Received: train_bn=1$"),
        ('backbone = "small_cnn"\nlr = "fast"\n', r"run\.toml, line 2: 'lr' must be a number such as 0\.1"),
        # A value of the right type that fit refuses, at the line it came from.
        ('backbone = "small_cnn"\nepochs = 0\n', r"run\.toml, line 2: epochs must be at least 1\. Received"),
        ('epochs = 2\nbackbone = "resnet5"\n', r"run\.toml, line 2: Unknown backbone\..*backbone='resnet5'$"),
        ('backbone = "small_cnn"\nschedule = "bogus"\n', r"run\.toml, line 2: Unknown schedule\."),
        # A plan's own keys.
        ('name = "mine"\nepochs = 2\n', r"run\.toml, line 1: 'name' belongs in a plan .*Received: name$"),
        (
            'epochs = 2\n\n[defaults]\nbackbone = "small_cnn"\n',
            r"run\.toml, line 3: 'defaults' belongs in a plan \(python -m kerasimg\.compare --plan FILE\)",
        ),
        ('[[experiment]]\nname = "a"\n', r"run\.toml, line 1: 'experiment' belongs in a plan"),
        # A config file does not name another one.
        ('config = "other.toml"\n', r"run\.toml, line 1: unknown key 'config' at the top level"),
        # TOML that does not parse: tomllib's line and column.
        ('backbone = "small_cnn"\nepochs = \n', r"run\.toml is not valid TOML: .*\(at line 2, column 10\)$"),
    ],
)
def test_each_mistake_is_one_line_naming_the_file_and_the_line(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as error:
        FitConfig.from_file(write(tmp_path, text))
    assert "\n" not in str(error.value)
    assert not isinstance(error.value, ArgumentError), "a file's mistake names the file, not a flag"


def test_the_cli_prints_a_files_mistake_as_one_line_and_exits_2(tmp_path, capsys, driver):
    path = write(tmp_path, 'backbone = "small_cnn"\nepoch = 3\n')
    assert fit_cli.main(["--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {path}, line 2: unknown key 'epoch' at the top level; did you mean 'epochs'? Known keys: "
        + ", ".join(sorted(f.name for f in dataclasses.fields(FitConfig) if f.name != "config"))
    ]
    assert fit_cli.main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err == f"error: Config file not found: {tmp_path / 'missing.toml'}\n"


def test_config_with_resume_is_refused(tmp_path, capsys, driver):
    path = write(tmp_path, RUN_TOML)
    assert fit_cli.main(["--config", str(path), "--resume", str(tmp_path / "run")]) == 2
    assert re.fullmatch(
        r"error: --config starts a new run from a settings file, and --resume continues .*run with the "
        r"settings saved in its config\.json: give one of them .*\n",
        capsys.readouterr().err,
    )
    with pytest.raises(UserError, match=r"^config starts a new run .*Received: config=.*, resume="):
        kerasimg.fit(config=path, resume=tmp_path / "run")


def test_the_files_strategy_decides_the_multihost_restart_unless_a_flag_overrides_it(
    tmp_path, monkeypatch, driver
):
    class Restarted(Exception):
        pass

    def restart(*_):
        raise Restarted

    monkeypatch.setattr(multihost, "restart_under_jax", restart)
    path = write(tmp_path, 'backbone = "small_cnn"\nstrategy = "multihost"\n')
    with pytest.raises(Restarted):
        fit_cli.main(["--config", str(path)])
    with pytest.raises(Handed) as handed:
        fit_cli.main(["--config", str(path), "--strategy", "none"])
    assert handed.value.config.strategy == "none"


def test_the_config_path_is_written_into_config_json(tiny_scenes, tmp_path):
    """``config.json``'s arguments are the FitConfig as given, with the file it was read from."""
    from kerasimg.data import load_data
    from kerasimg.models import build_classifier, get_backbone
    from kerasimg.training.record import run_record

    text = f'backbone = "small_cnn"\nweights = "none"\ndata = "{tiny_scenes}"\nimage_size = 32\n'
    path = write(tmp_path, text)
    resolved = FitConfig.from_file(path, epochs=1).resolve()
    data = load_data(str(tiny_scenes), log=lambda *_: None)
    model = build_classifier("small_cnn", data.num_classes, image_size=32, weights="none")
    record = run_record(
        resolved,
        data,
        model,
        get_backbone("small_cnn"),
        out=str(tmp_path / "run"),
        replicas=1,
        processes=1,
        global_batch_size=32,
        created="now",
    )
    assert record["arguments"]["config"] == str(path)
    assert record["arguments"]["epochs"] == 1 and record["arguments"]["image_size"] == 32


@pytest.mark.parametrize(
    "key, message",
    [
        ('config = "run.toml"', r"plan\.toml, line 2: unknown key 'config' in \[defaults\]\. Known keys"),
        ("epoch = 2", r"plan\.toml, line 2: unknown key 'epoch' in \[defaults\]; did you mean 'epochs'\?"),
    ],
)
def test_a_plan_takes_no_config_key_and_suggests_the_closest_key(tmp_path, key, message):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[defaults]\n{key}\n\n[[experiment]]\nname = "a"\nbackbone = "small_cnn"\n')
    with pytest.raises(UserError, match=message):
        load_plan(str(plan))


def test_the_readmes_example_file_is_a_valid_config(tmp_path):
    example = re.search(r"```toml\n(# run\.toml: .*?)```", TRAINING_GUIDE.read_text(encoding="utf-8"), re.S)
    config = FitConfig.from_file(write(tmp_path, example.group(1)))
    assert (config.backbone, config.schedule, config.batch_size) == ("efficientnet_b0", "last-block", 16)
