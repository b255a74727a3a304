"""The compound-scalable EfficientNet builder is Keras Applications' network; FLOPs are counted right."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasimg.errors import UserError
from kerasimg.models import build_classifier, count_flops, get_backbone
from kerasimg.models.efficientnet import KERAS_COEFFICIENTS, EfficientNet, compound, round_filters
from kerasimg.tuning.space import Triple


@pytest.mark.parametrize("variant", list(KERAS_COEFFICIENTS))
def test_parameter_counts_equal_keras_applications(variant):
    width, depth, resolution, dropout = KERAS_COEFFICIENTS[variant]
    # 32 px: the parameter count does not depend on the resolution.
    ours = EfficientNet(width, depth, resolution, dropout=dropout, input_shape=(32, 32, 3), include_top=True)
    keras_model = getattr(keras.applications, f"EfficientNet{variant.upper()}")(
        weights=None, input_shape=(32, 32, 3)
    )
    assert ours.count_params() == keras_model.count_params()

    def named(model):  # the input and the two scaling layers get session-numbered names
        return [layer.name for layer in model.layers if layer.name.startswith(("stem", "block", "top"))]

    assert named(ours) == named(keras_model)


def test_weights_copied_from_keras_b0_give_identical_outputs():
    keras.utils.set_random_seed(0)
    reference = keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    # Random normalisation statistics and BatchNorm moving averages too, so every weight matters.
    reference.set_weights(
        [w + rng.uniform(0.1, 0.2, w.shape).astype(w.dtype) for w in reference.get_weights()]
    )
    ours = EfficientNet(1.0, 1.0, 224, input_shape=(64, 64, 3), include_top=True)
    ours.set_weights(reference.get_weights())
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        ours(images, training=False), reference(images, training=False), rtol=1e-5, atol=1e-6
    )


def test_compound_scaling_arithmetic():
    c = compound(2, alpha=1.2, beta=1.1, gamma=1.15, base_resolution=224)
    assert c.depth == pytest.approx(1.44) and c.width == pytest.approx(1.21)
    assert c.resolution == round(224 * 1.15**2) == 296
    assert compound(0, 1.2, 1.1, 1.15) == compound(0, 1.0, 1.0, 1.0)
    # The paper's triple costs ~2 (the search's one alpha*beta^2*gamma^2), and compound() spends it:
    # FLOPs ~ depth * width^2 * resolution^2 grow by cost^phi, up to the rounding of the resolution.
    cost = Triple(alpha=1.2, beta=1.1, gamma=1.15).cost
    assert cost == pytest.approx(1.92, abs=0.01)
    assert c.depth * c.width**2 * (c.resolution / 224) ** 2 == pytest.approx(cost**2, rel=0.005)
    with pytest.raises(ValueError, match=">= 1"):
        compound(1, 0.9, 1.1, 1.1)


def test_channels_round_like_the_reference():
    assert round_filters(32, 1.1) == 32  # 35.2 rounds to the nearest multiple of 8
    assert round_filters(10, 1.1) == 16  # 11 would round to 8, more than 10% down, so up to 16
    assert round_filters(16, 1.0) == 16 and round_filters(1280, 2.0) == 2560


def test_arbitrary_coefficients_are_backbone_names():
    spec = get_backbone("efficientnet_w1.2_d1.4_r64")
    assert spec.image_size == 64 and spec.feature_dim == round_filters(1280, 1.2)
    model = build_classifier(spec, 3, weights="none")
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 3)
    with pytest.raises(UserError, match="Unknown backbone") as raised:
        get_backbone("efficientnet_wide")
    message = str(raised.value)  # the closest few names, not all of them, and where the rest are
    assert "Did you mean efficientnet_" in message and "resnet50" not in message
    assert "`kerasimg models list` shows all" in message


@pytest.mark.parametrize(
    "name", ["efficientnet_w0_d1_r64", "efficientnet_w1_d0_r64", "efficientnet_w1_d1_r16"]
)
def test_impossible_coefficients_are_refused_when_the_name_is_looked_up(name):
    with pytest.raises(UserError, match=f"EfficientNet needs width > 0.*backbone='{name}'"):
        get_backbone(name)


def test_flops_match_a_hand_count():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)  # 6x6 outputs x 3x3x3 taps x 4 filters
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, use_bias=False)(x)  # 144 inputs x 5 outputs
    model = keras.Model(inputs, outputs)
    multiply_adds = 6 * 6 * 3 * 3 * 3 * 4 + 144 * 5
    assert count_flops(model) == 2 * multiply_adds
    assert count_flops(model, batch_size=3) == 3 * 2 * multiply_adds
