"""ConvNeXt, EfficientNetV2, MobileNetV3 and DINOv2: what wrapping them must not change.

The registry-wide tests in test_models.py build, train, save and partition every entry
(the largest variants of a family are covered by their smallest sibling). These check
what is particular to wrapping another library's model: the parameter count is exactly
the wrapped model's (and the published one), and ``last-block`` trains the last stage only.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from kerasimg.models import backbone_of, build_classifier, get_backbone, stage_layers
from kerasimg.models.keras_application import keras_weights
from kerasimg.models.weights import resolve_weights
from kerasimg.training.schedules import apply_phase, parse_schedule

# One per family: the smallest variant, built at 32 px with random weights.
KERAS_APPLICATIONS = {
    "convnext_tiny": keras.applications.ConvNeXtTiny,
    "efficientnetv2_b0": keras.applications.EfficientNetV2B0,
    "efficientnetv2_s": keras.applications.EfficientNetV2S,  # the [-1, 1] scaling variant
    "mobilenetv3_small": keras.applications.MobileNetV3Small,
}


@functools.cache
def built(name: str) -> keras.Model:
    """The backbone at 32 px, built once per test module run."""
    return get_backbone(name).build(input_shape=(32, 32, 3))


def count(weights) -> int:
    return int(sum(int(keras.ops.size(w)) for w in weights))


@pytest.mark.parametrize("name", list(KERAS_APPLICATIONS))
def test_parameters_equal_the_keras_application_it_wraps(name):
    spec = get_backbone(name)
    ours = built(name)
    theirs = KERAS_APPLICATIONS[name](include_top=False, weights=None, input_shape=(32, 32, 3))
    assert ours.name == "backbone"
    assert ours.count_params() == theirs.count_params()
    assert count(ours.trainable_weights) == count(theirs.trainable_weights)
    assert ours.output_shape[-1] == spec.feature_dim
    # Same input scaling as Keras builds under its own name (EfficientNetV2 picks it by name).
    assert [type(layer).__name__ for layer in ours.layers[:3]] == [
        type(layer).__name__ for layer in theirs.layers[:3]
    ]


# (backbone, published parameters with the 1000-class ImageNet head, that head's parameters, source).
PUBLISHED = [
    # ConvNeXt-T: 28.6M in the keras.io/api/applications table (timm's convnext_tiny: 28.59M);
    # the head is a LayerNorm and a Dense layer.
    ("convnext_tiny", 28.6e6, 2 * 768 + 768 * 1000 + 1000, "keras.io applications table"),
    # EfficientNetV2-B0: 7.2M in the keras.io/api/applications table; the head is a Dense layer.
    ("efficientnetv2_b0", 7.2e6, 1280 * 1000 + 1000, "keras.io applications table"),
]


@pytest.mark.parametrize("name, published, head, source", PUBLISHED)
def test_parameters_match_the_published_count(name, published, head, source):
    backbone = built(name)
    assert round((backbone.count_params() + head) / 1e5) == round(published / 1e5), source


@pytest.mark.parametrize(
    "name", ["convnext_tiny", "efficientnetv2_b0", "mobilenetv3_small", "dinov2_small14"]
)
def test_last_block_trains_only_the_last_stage(name):
    spec = get_backbone(name)
    model = build_classifier(name, 3, image_size=32, weights="none")
    (phase,) = parse_schedule("last-block", spec.stage_names, 1, lr=1e-3, finetune_lr=1e-4)
    apply_phase(model, spec, phase)
    groups = stage_layers(backbone_of(model), spec)
    last = {id(w) for layer in groups[spec.stage_names[-1]] for w in layer.trainable_weights}
    earlier = {id(w) for stage in spec.stage_names[:-1] for layer in groups[stage] for w in layer.weights}
    trainable = {id(w) for w in backbone_of(model).trainable_weights}
    assert trainable and trainable == last
    assert not trainable & earlier
    head = {id(w) for w in model.get_layer("predictions").trainable_weights}
    assert {id(w) for w in model.trainable_weights} == trainable | head


def keras_notop_file(name: str) -> tuple[str, str, str]:
    """(file name, origin, hash) that keras.applications itself fetches for ``include_top=False``."""
    from keras.src.applications import convnext, efficientnet_v2, mobilenet_v3

    family, variant = name.split("_")
    if family == "convnext":
        file_name = f"{name}_notop.h5"
        return file_name, convnext.BASE_WEIGHTS_PATH + file_name, convnext.WEIGHTS_HASHES[name][1]
    if family == "efficientnetv2":
        key = variant if variant.startswith("b") else f"-{variant}"
        file_name = f"efficientnetv2-{variant}_notop.h5"
        return (
            file_name,
            efficientnet_v2.BASE_WEIGHTS_PATH + file_name,
            efficientnet_v2.WEIGHTS_HASHES[key][1],
        )
    key = f"{variant}_224_1.0_float"
    file_name = f"weights_mobilenet_v3_{key}_no_top_v2.h5"
    return file_name, mobilenet_v3.BASE_WEIGHT_PATH + file_name, mobilenet_v3.WEIGHTS_HASHES[key][1]


MODERN = [
    *(f"convnext_{v}" for v in ("tiny", "small", "base", "large", "xlarge")),
    *(f"efficientnetv2_{v}" for v in ("b0", "b1", "b2", "b3", "s", "m", "l")),
    "mobilenetv3_small",
    "mobilenetv3_large",
]


@pytest.mark.parametrize("name", MODERN)
def test_imagenet_weights_are_the_file_keras_fetches_and_reach_keras_as_imagenet(name, monkeypatch):
    fetched = []

    def get_file(file_name, origin, cache_subdir, file_hash):
        fetched.append((file_name, origin, file_hash))
        return f"/cache/{file_name}"

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    spec = get_backbone(name)
    path = resolve_weights(spec, "imagenet")
    assert fetched == [keras_notop_file(name)]
    assert keras_weights(path, spec.pretrained.file_name) == "imagenet"
    assert (
        keras_weights("/elsewhere/mine.weights.h5", spec.pretrained.file_name) == "/elsewhere/mine.weights.h5"
    )


def test_models_list_json_carries_the_published_and_counted_facts(capsys):
    import json

    from kerasimg.models import __main__ as models_cli

    assert models_cli.main(["list", "--json", "--backbone", "mobilenetv3_small"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["imagenet_top1"], row["top1_source"]) == (68.1, "keras.applications.MobileNetV3 docstring")
    assert row["pick_when"] and row["stages"] == ["stride2", "stride4", "stride8", "stride16", "stride32"]
    assert row["parameters"] == 939_120  # MobileNetV3Small(include_top=False) in Keras 3
    assert 0.05 < row["gflops"] < 0.2  # Howard et al. 2019: 56 M multiply-adds = 0.11 GFLOPs here
    scaling = row["input_scaling"]
    assert scaling["where"] == "in the backbone"
    assert (scaling["scale"], scaling["offset"]) == pytest.approx((1 / 127.5, -1.0))


def test_modern_plan_runs_the_seed_protocol_against_the_seeds_vit_row():
    from kerasimg.experiments.plans import load_plan

    seed = {e.name: e for e in load_plan("seed").experiments}
    plan = {e.name: e for e in load_plan("modern").experiments}
    reference = plan.pop("vit-mlp-head")
    assert reference.settings == seed["vit-mlp-head"].settings | {"image_size": 224}
    assert reference.reported == seed["vit-mlp-head"].reported
    assert sorted(e.settings["backbone"] for e in plan.values()) == [
        "convnext_tiny",
        "dinov2_small14",
        "efficientnetv2_s",
        "mobilenetv3_large",
    ]
    assert {e.settings["schedule"] for e in plan.values()} == {
        seed["resnet50-last-block"].settings["schedule"]
    }


def test_convnext_depthwise_convolutions_are_rebuilt_equal_and_both_weight_layouts_load(tmp_path):
    """Keras's ``Conv2D(groups=channels)`` runs ~10x slower on a CPU than the ``DepthwiseConv2D`` it is."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    theirs = keras.applications.ConvNeXtTiny(include_top=False, weights=None, input_shape=(32, 32, 3))
    theirs.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in theirs.get_weights()])
    theirs.save_weights(tmp_path / "keras_layout.weights.h5")
    spec = get_backbone("convnext_tiny")
    keras.utils.set_random_seed(1)
    ours = spec.build(input_shape=(32, 32, 3), weights=str(tmp_path / "keras_layout.weights.h5"))
    assert not [layer.name for layer in ours.layers if getattr(layer, "groups", 1) > 1]
    assert sum(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in ours.layers) == 18
    # Stage prefixes still find every layer (Keras numbers the input and final norm per session).
    assert [layer.name for layer in ours.layers[1:-1]] == [layer.name for layer in theirs.layers[1:-1]]
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = theirs.predict(images, verbose=0)
    np.testing.assert_allclose(ours.predict(images, verbose=0), expected, atol=1e-4)
    # A file saved from kerasimg's own backbone (depthwise kernels) loads too.
    ours.save_weights(tmp_path / "own_layout.weights.h5")
    keras.utils.set_random_seed(2)
    again = spec.build(input_shape=(32, 32, 3), weights=str(tmp_path / "own_layout.weights.h5"))
    np.testing.assert_allclose(again.predict(images, verbose=0), expected, atol=1e-4)
