"""Every registered backbone, parametrised over the registry so a new one is tested for free."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasimg.errors import UserError
from kerasimg.models import backbone_of, build_classifier, get_backbone, list_backbones, stage_layers
from kerasimg.models.preprocessing import Preprocess

# The smallest input each family accepts (InceptionResNetV2 needs 75 px).
TINY_SIZE = {"inception_resnet": 75}


# Variants built by the same Keras (or keras-hub) builder as a smaller sibling the suite does test; building
# ConvNeXt-XLarge or EfficientNetV2-L alone takes ~9 s on 2 cores. tests/test_modern_backbones.py
# checks every variant's parameter count against keras.applications without the graph work.
COVERED_BY = {
    **{f"convnext_{v}": "convnext_tiny" for v in ("small", "base", "large", "xlarge")},
    **{f"efficientnetv2_{v}": "efficientnetv2_b0" for v in ("b1", "b2", "b3", "s", "m", "l")},
    **{f"dinov2_{v}14": "dinov2_small14" for v in ("base", "large")},
}
# Their stages differ from the sibling's (tested above), their layers do not: the same Keras
# application at other coefficients (B1-B7 took 2.4 minutes), the same ResNeXt and ViT builders.
# DenseNet-201 and Inception-ResNet-v2 go through ResNet-50's Keras Applications wrapper (their
# scaling modes are checked in test_preprocess_layer_matches_keras_applications); their eager
# steps took 26 s and 39 s.
ROUND_TRIP_COVERED_BY = {
    **COVERED_BY,
    "densenet201": "resnet50",
    "inception_resnet_v2": "resnet50",
    "mobilenetv3_large": "mobilenetv3_small",
    **{f"efficientnet_b{i}": "efficientnet_b0" for i in range(1, 8)},
    "resnext101_32x8d": "resnext50_32x4d",
    "vit_small16": "vit_tiny16",
    "vit_base16": "vit_tiny16",
}


def tiny_size(name):
    return TINY_SIZE.get(get_backbone(name).family, 32)


def backbone_params(covered_by=COVERED_BY):
    params = []
    for name in list_backbones():
        if name in covered_by:
            reason = f"same builder as {covered_by[name]}, which is tested; too big for the suite"
            params.append(pytest.param(name, marks=pytest.mark.skip(reason=reason)))
        else:
            params.append(name)
    return params


@pytest.mark.parametrize("name", backbone_params(ROUND_TRIP_COVERED_BY))
def test_shape_training_step_and_keras_round_trip(name, tmp_path):
    # Eager calls and an eager training step: tracing EfficientNet-B7's training graph alone
    # takes minutes on 2 cores. Graph-mode training is what the fit tests exercise.
    size = tiny_size(name)
    keras.utils.set_random_seed(0)
    model = build_classifier(name, 3, image_size=size, weights="none")
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True
    )
    head_before = model.get_layer("predictions").kernel.numpy().copy()
    loss = model.train_on_batch(images, np.array([0, 2]))
    assert np.isfinite(loss)
    assert not np.allclose(head_before, model.get_layer("predictions").kernel.numpy())

    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("name", backbone_params())
def test_stages_cover_every_weight_once_and_in_order(name):
    spec = get_backbone(name)
    backbone = spec.build(input_shape=(tiny_size(name), tiny_size(name), 3))
    groups = stage_layers(backbone, spec)
    assert list(groups) == spec.stage_names
    assert all(groups[stage] for stage in groups), "every stage holds layers"
    owners = [id(v) for stage in groups for layer in groups[stage] for v in layer.weights]
    assert len(owners) == len(set(owners)), "no weight is in two stages"
    assert set(owners) == {id(v) for v in backbone.weights}, "every weight is in a stage"
    if spec.stage_fn is None:
        stage_index = {layer.name: i for i, stage in enumerate(groups) for layer in groups[stage]}
        assert sorted(stage_index) == sorted(layer.name for layer in backbone.layers)
        order = [stage_index[layer.name] for layer in backbone.layers]
        assert order == sorted(order), "stages follow the model's layer order"


@pytest.mark.parametrize(
    "mode, module", [("caffe", "resnet"), ("torch", "densenet"), ("tf", "inception_resnet_v2")]
)
def test_preprocess_layer_matches_keras_applications(mode, module):
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(Preprocess(mode)(images), expected, rtol=1e-5, atol=1e-4)


def test_backbone_is_reachable_and_freezable():
    model = build_classifier("small_cnn", 4, image_size=32, weights="none")
    backbone_of(model).trainable = False
    names = {w.path for w in model.trainable_weights}
    assert names and all(n.startswith("predictions") for n in names)


def test_unknown_backbone_lists_close_matches():
    with pytest.raises(UserError, match=r"Did you mean resnet50.*Received: backbone='resnet5'"):
        get_backbone("resnet5")


def test_a_duplicate_registration_raises():
    from kerasimg.models import register_backbone

    with pytest.raises(ValueError, match="already registered"):
        register_backbone(
            image_size=32, preprocessing="tf", feature_dim=1, stages=(("a", "a"), ("b", "b")), name="resnet50"
        )(lambda **_: None)
