"""ViT backbones from keras-hub: raw pixels in, heads, presets from a local folder, offline errors."""

from __future__ import annotations

import socket

import keras
import keras_hub
import numpy as np
import pytest

from kerasimg.errors import UserError, WeightsUnavailableError
from kerasimg.models import backbone_of, build_classifier, get_backbone, load_classifier
from kerasimg.models.weights import resolve_weights


def test_saved_model_takes_raw_pixels_with_the_scaling_inside(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_classifier("vit_tiny16", 4, image_size=32, weights="none", head="mlp")
    assert model.get_layer("head_hidden").activation.__name__ == "gelu"
    model.save(tmp_path / "vit.keras")
    restored = load_classifier(tmp_path / "vit.keras")
    raw = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(raw, training=False))
    np.testing.assert_allclose(restored(raw, training=False), expected, rtol=1e-5, atol=1e-6)
    # The same network fed pre-scaled pixels without the Rescaling layer gives the same answer.
    vit = backbone_of(restored).get_layer("vit_backbone")
    tokens = vit(raw / 127.5 - 1.0, training=False)
    x = restored.get_layer("pool")(tokens)
    for name in ("head_hidden", "head_dropout", "predictions"):
        x = (
            restored.get_layer(name)(x, training=False)
            if name == "head_dropout"
            else restored.get_layer(name)(x)
        )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(x), expected, rtol=1e-4, atol=1e-5)


def test_a_local_preset_folder_loads_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("tried the network"))
    keras.utils.set_random_seed(1)
    saved = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768
    )
    preset = tmp_path / "my_vit"
    saved.save_to_preset(str(preset))
    keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=1 / 255.0, offset=0.0).save_to_preset(
        str(preset)
    )
    model = build_classifier("vit_tiny16", 3, image_size=32, weights=str(preset))
    loaded = backbone_of(model).get_layer("vit_backbone")
    for a, b in zip(saved.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    rescaling = backbone_of(model).get_layer("vit_rescaling")
    assert rescaling.scale == pytest.approx(1 / 255.0) and rescaling.offset == pytest.approx(0.0)


def test_an_unreachable_preset_fails_fast_naming_the_alternative(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(socket, "create_connection", offline)
    with pytest.raises(WeightsUnavailableError) as caught:
        build_classifier("vit_base16", 3, weights="preset:vit_base_patch16_224_imagenet")
    message = str(caught.value)
    assert "vit_base_patch16_224_imagenet" in message and "www.kaggle.com is unreachable" in message
    assert "save_to_preset" in message and "--weights DIR" in message and "--weights none" in message


def test_presets_are_refused_for_non_vit_backbones(tmp_path):
    with pytest.raises(
        UserError, match=r"^resnet50 takes a weights file; keras-hub presets are for the ViT and DINOv2"
    ):
        resolve_weights(get_backbone("resnet50"), "preset:vit_base_patch16_224_imagenet")
