"""The registry carries behaviour: a new family plugs in without touching the generic code."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasimg.models
from kerasimg.errors import UserError
from kerasimg.models import (
    WeightsSource,
    build_classifier,
    get_backbone,
    list_backbones,
    load_classifier,
    register_backbone,
    register_load_hook,
)
from kerasimg.models import registry as registry_module
from kerasimg.models.preprocessing import Preprocess
from kerasimg.models.weights import resolve_weights

MODELS_DIR = Path(kerasimg.models.__file__).parent
# Family modules: every module that registers a backbone, and the checkpoint port.
FAMILY_MODULES = {get_backbone(name).factory.__module__ for name in list_backbones()} | {
    "kerasimg.models.torch_port"
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions, as dotted names."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("file_name", ["classifier.py", "weights.py"])
def test_generic_model_code_imports_no_family_module(file_name):
    assert {
        "kerasimg.models.vit",
        "kerasimg.models.applications",
        "kerasimg.models.resnext",
    } <= FAMILY_MODULES
    imported = imported_modules(MODELS_DIR / file_name)
    assert imported & FAMILY_MODULES == set()
    assert "keras_hub" not in imported, "keras-hub is the ViT family's business"


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations in a test go to a copy of the registry, dropped afterwards."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    monkeypatch.setattr(registry_module, "_LOAD_HOOKS", list(registry_module._LOAD_HOOKS))


def test_a_new_family_brings_its_own_pooling_and_weights_hook(scratch_registry):
    received = []
    source = WeightsSource(
        name="toy_hub",
        claims=lambda weights: weights.startswith("toy:"),
        resolve=lambda weights: weights.removeprefix("toy:") + "-resolved",
        label="toy presets",
        owners="the toy backbones",
        usage="a toy preset (--weights toy:NAME)",
    )

    @register_backbone(
        image_size=32,
        preprocessing="tf",
        feature_dim=4,
        stages=(("a", "a_"), ("b", "b_")),
        pooling=lambda name: keras.layers.GlobalMaxPooling2D(name=name),
        weights_sources=(source,),
    )
    def toy_family(input_shape, weights=None):
        received.append(weights)
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(4, 3, name="a_conv")(inputs)
        x = keras.layers.Conv2D(4, 3, name="b_conv")(x)
        return keras.Model(inputs, x, name="backbone")

    model = build_classifier("toy_family", 3, image_size=32, weights="toy:tiny")
    assert received == ["tiny-resolved"], "the factory got what the family's own hook resolved"
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalMaxPooling2D)
    assert model.output_shape == (None, 3)
    with pytest.raises(
        UserError, match=r"resnet50 takes a weights file; toy presets are for the toy backbones"
    ):
        resolve_weights(get_backbone("resnet50"), "toy:tiny")
    with pytest.raises(UserError, match=r"--weights PATH or a toy preset \(--weights toy:NAME\)"):
        resolve_weights(get_backbone("toy_family"), "imagenet")


def test_load_classifier_runs_the_families_load_hooks(scratch_registry, tmp_path):
    calls = []
    register_load_hook(lambda: calls.append("ran"))
    model = build_classifier("small_cnn", 2, image_size=32, weights="none")
    model.save(tmp_path / "m.keras")
    load_classifier(tmp_path / "m.keras")
    assert calls == ["ran"]


@pytest.mark.parametrize("name", list_backbones())
def test_the_default_pretrained_config_is_what_the_model_applies(name):
    spec = get_backbone(name)
    config = spec.pretrained_cfg()
    assert config.input_size == spec.image_size
    if config.in_model:
        assert spec.preprocessing == "none", "the backbone scales its own input"
        return
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ordered = images[..., ::-1] if config.channel_order == "BGR" else images
    expected = (ordered * config.scale + config.offset - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(Preprocess(spec.preprocessing)(images), expected, rtol=1e-5, atol=1e-4)


def test_pooling_must_be_known_or_callable():
    with pytest.raises(
        ValueError, match=r"pooling must be one of \('avg', 'token', 'token\+mean'\).*Received: 'max'"
    ):
        register_backbone(
            image_size=32, preprocessing="tf", feature_dim=1, stages=(("a", "a"), ("b", "b")), pooling="max"
        )
