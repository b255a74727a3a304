"""One description of a fit setting (``FitConfig``'s fields) and the Python API's checks of its arguments.

Nothing here trains: a refused argument must stop before any run file is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import kerasimg
import kerasimg.docs
import kerasimg.experiments.plans
import kerasimg.fit as fit_cli
import kerasimg.predict as predict_cli
from kerasimg.errors import ArgumentError, UserError
from kerasimg.settings import schema, setting
from kerasimg.training.config import FitConfig


@dataclasses.dataclass
class WithMomentum(FitConfig):
    """FitConfig with one more setting, added as a new flag would be: one field."""

    bn_momentum: float | None = setting(None, "BatchNorm momentum of trained layers", metavar="M")


@pytest.fixture
def one_more_setting(monkeypatch):
    monkeypatch.setattr(fit_cli, "FitConfig", WithMomentum)
    monkeypatch.setattr(kerasimg.experiments.plans, "FitConfig", WithMomentum)


def test_a_new_field_is_a_flag_a_plan_key_and_a_docs_row(one_more_setting, tmp_path):
    parser = fit_cli.build_parser()
    assert parser.parse_args(["--bn-momentum", "0.9"]).bn_momentum == 0.9
    assert parser.parse_args([]).bn_momentum is None
    row = [line for line in kerasimg.docs.options_table(parser).splitlines() if "--bn-momentum" in line]
    assert row == ["| `--bn-momentum M` |  | BatchNorm momentum of trained layers |"]
    assert schema(WithMomentum)["bn_momentum"] == "number"
    plan = tmp_path / "plan.toml"
    plan.write_text('[defaults]\nbn_momentum = 0.9\n\n[[experiment]]\nname = "a"\nbackbone = "small_cnn"\n')
    assert kerasimg.experiments.plans.load_plan(str(plan)).experiments[0].settings["bn_momentum"] == 0.9
    plan.write_text('[defaults]\nbn_momentum = "high"\n\n[[experiment]]\nname = "a"\n')
    with pytest.raises(UserError, match=r"line 2: 'bn_momentum' must be a number"):
        kerasimg.experiments.plans.load_plan(str(plan))


def test_the_fit_flags_are_fitconfigs_fields():
    """Every FitConfig field is a flag with the field's default, and no training flag is written elsewhere."""
    actions = {a.dest: a for a in fit_cli.build_parser()._actions}
    for field in dataclasses.fields(FitConfig):
        assert actions[field.name].default == field.default, field.name
        assert actions[field.name].help == field.metadata["help"], field.name
    assert set(actions) - {f.name for f in dataclasses.fields(FitConfig)} == {
        "help",
        "export",
        "zoo",
        "format",
        "calibration_images",
        "resume",
    }


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"epochs": "3"}, r"epochs must be an integer such as 3\. Received: epochs='3'"),
        ({"batch_size": "4"}, r"batch_size must be an integer such as 3\. Received: batch_size='4'"),
        ({"lr": "0.1"}, r"lr must be a number such as 0\.1\. Received: lr='0\.1'"),
        ({"data": None}, r"data must be a string\. Received: data=None"),
        ({"epochs": 1.5}, r"epochs must be an integer such as 3\. Received: epochs=1\.5"),
        ({"epochs": True}, r"epochs must be an integer such as 3\. Received: epochs=True"),
        ({"image_size": "64"}, r"image_size must be an integer such as 3 \(or None\)\. Received"),
        ({"train_bn": 1}, r"train_bn must be True or False\. Received: train_bn=1"),
    ],
)
def test_the_api_refuses_a_wrong_type_before_writing_anything(tmp_path, arguments, message):
    out = tmp_path / "run"
    settings = {"backbone": "small_cnn", "data": str(tmp_path), "weights": "none", "out": str(out)}
    with pytest.raises(ArgumentError, match=message):
        kerasimg.fit(**(settings | arguments))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_paths_and_numpy_integers_are_taken_as_the_cli_would():
    config = FitConfig(data=Path("some/folder"), out=Path("runs/x"), epochs=np.int64(3))
    assert (config.data, config.out, config.epochs) == ("some/folder", "runs/x", 3)
    assert type(config.epochs) is int


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_predict_refuses_a_top_k_below_one(top_k):
    with pytest.raises(ArgumentError, match=r"top_k must be a whole number of at least 1\. Received: top_k="):
        kerasimg.predict("no-such-model", "no-such-image.jpg", top_k=top_k)


def test_predict_cli_refuses_top_k_zero(capsys):
    assert predict_cli.main(["--model", "m", "x.jpg", "--top-k", "0"]) == 2
    assert "--top-k must be a whole number of at least 1. Received: --top-k 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "image, kind",
    [
        (b"\xff\xd8\xff" + b"\0" * 5000, "bytes"),
        (np.zeros((8, 8, 3), "uint8"), "ndarray"),
        ([b"abc"], "bytes"),
    ],
)
def test_predict_refuses_in_memory_images_in_one_line(image, kind):
    with pytest.raises(UserError, match=rf"save it to a file first\. Received: an image of type {kind}$"):
        kerasimg.predict("no-such-model", image)


def test_predict_refuses_a_pil_image():
    from PIL import Image

    with pytest.raises(UserError, match=r"Received: an image of type Image$"):
        kerasimg.predict("no-such-model", Image.new("RGB", (8, 8)))
