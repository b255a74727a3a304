"""``--layer-decay F``: stage k below the head moves F^k as far as without it, for SGD and Adam alike."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from helpers import tiny_config

from kerasimg.errors import ArgumentError
from kerasimg.models import backbone_of, build_classifier, get_backbone, stage_layers
from kerasimg.training.layer_decay import LayerDecayAdamW, lr_multipliers, stage_rates
from kerasimg.training.recipe import RECIPES, compile_classifier, resolve_recipe
from kerasimg.training.schedules import Phase

SPEC = get_backbone("small_cnn")
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
LABELS = np.array([0, 1, 0, 1])


def _model():
    keras.utils.set_random_seed(0)
    return build_classifier("small_cnn", 2, image_size=32, weights="none", dropout=0.0)


def _moves(optimizer: str, decay: float | None, steps: int = 1, weight_decay: float = 0.0):
    """{variable path: weights after ``steps`` minus before} for one fresh model."""
    model = _model()
    recipe = dataclasses.replace(RECIPES["seed"], optimizer=optimizer, weight_decay=weight_decay)
    multipliers = None if decay is None else lr_multipliers(model, SPEC, decay)
    compile_classifier(model, 0.01, recipe, multipliers, run_eagerly=True)  # no graph to trace
    before = {v.path: v.numpy() for v in model.trainable_variables}
    for _ in range(steps):
        model.train_on_batch(IMAGES, LABELS)
    return {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}, model


def _stage_of(model) -> dict[str, int]:
    """{variable path: k}, k = stages below the head (0 for the head)."""
    groups = stage_layers(backbone_of(model), SPEC)
    depth = {}
    for k, (_, layers) in zip(range(len(groups), 0, -1), groups.items()):
        for layer in layers:
            depth.update({v.path: k for v in layer.trainable_weights})
    return depth


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_stage_k_below_the_head_moves_f_to_the_k_of_its_undecayed_step(optimizer):
    plain, model = _moves(optimizer, None)
    decayed, _ = _moves(optimizer, 0.5)
    depth = _stage_of(model)
    assert set(depth.values()) == {1, 2, 3, 4}  # every stage of small_cnn is checked
    for path, move in plain.items():
        k = depth.get(path, 0)
        assert np.abs(move).max() > 0, path
        # The first step of Adam is lr * g / (|g| + eps), linear in the rate like SGD's.
        np.testing.assert_allclose(decayed[path], move * 0.5**k, rtol=1e-4, atol=1e-7, err_msg=path)


def test_decay_one_through_the_layer_decay_optimizer_equals_none_with_weight_decay():
    # Weight decay moves into each variable's update step: at F = 1 it must be Keras's own.
    plain, _ = _moves("adamw", None, steps=2, weight_decay=0.1)
    through, model = _moves("adamw", 1.0, steps=2, weight_decay=0.1)
    assert isinstance(model.optimizer, LayerDecayAdamW)
    for path, move in plain.items():
        np.testing.assert_allclose(through[path], move, rtol=1e-5, atol=1e-7, err_msg=path)


def test_a_saved_model_loads_back_with_its_multipliers(tmp_path):
    model = _model()
    multipliers = lr_multipliers(model, SPEC, 0.5)
    compile_classifier(model, 0.01, resolve_recipe("modern"), multipliers, run_eagerly=True)
    model.train_on_batch(IMAGES, keras.ops.one_hot(LABELS, 2))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is LayerDecayAdamW
    assert loaded.optimizer.lr_multipliers == multipliers
    assert {v.path for v in loaded.trainable_variables} >= set(multipliers)


def test_stage_rates_of_a_phase_list_the_trained_stages_from_the_head_down():
    phase = Phase(0, 2, "block3", 0.1)
    assert stage_rates(phase, SPEC.stage_names, 0.5) == {"head": 0.1, "block4": 0.05, "block3": 0.025}
    assert stage_rates(Phase(0, 2, "head", 0.1), SPEC.stage_names, 0.5) == {"head": 0.1}


@pytest.mark.parametrize("value", [0.0, 1.5, float("nan")])
def test_layer_decay_outside_0_1_is_refused_naming_it(value):
    with pytest.raises(ArgumentError, match="layer_decay"):
        resolve_recipe("seed", layer_decay=value)


def test_config_json_records_each_phases_stage_rates(tmp_path):
    config = tiny_config(
        "scenes", tmp_path, weights="imagenet", epochs=2, schedule="0:head,1:block3", layer_decay=0.5
    )
    saved = config.resolve().to_json()
    assert saved["recipe"]["layer_decay"] == 0.5
    head, tuned = (phase["lr"] for phase in saved["phases"])
    assert [phase["stage_lr"] for phase in saved["phases"]] == [
        {"head": head},
        {"head": tuned, "block4": tuned / 2, "block3": tuned / 4},
    ]
