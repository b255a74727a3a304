"""hub:PRESET and DINOv2: a local keras-hub preset round trip, discovered stages, fast offline failure."""

from __future__ import annotations

import socket
import time

import keras
import keras_hub
import numpy as np
import pytest

from kerasimg.errors import UserError, WeightsUnavailableError
from kerasimg.models import backbone_of, build_classifier, get_backbone, load_classifier, stage_layers
from kerasimg.models.dinov2 import IMAGENET_OFFSET, IMAGENET_SCALE, dinov2_config
from kerasimg.models.weights import resolve_weights

SIZE = 42  # 3 x 3 patches of 14 px
# A converter scaling that is not ImageNet's, so the test sees the preset's own being used.
SCALE, OFFSET = 1 / 127.5, -1.0


@pytest.fixture(scope="module")
def dino_preset(tmp_path_factory):
    """A two-block DINOv2 with random weights and its image converter, saved as a keras-hub preset."""
    keras.utils.set_random_seed(0)
    config = {**dinov2_config("small", SIZE), "num_layers": 2}
    model = keras_hub.models.DINOV2Backbone(**config)
    folder = tmp_path_factory.mktemp("presets") / "tiny_dino"
    model.save_to_preset(str(folder))
    keras_hub.layers.DINOV2ImageConverter(image_size=(SIZE, SIZE), scale=SCALE, offset=OFFSET).save_to_preset(
        str(folder)
    )
    return folder, model


def pixels(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")


def test_a_local_preset_round_trips_with_its_converter_inside(dino_preset, tmp_path, monkeypatch):
    folder, original = dino_preset
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("tried the network"))
    name = f"hub:{folder}"
    spec = get_backbone(name)
    assert (spec.image_size, spec.output, spec.feature_dim) == (SIZE, "tokens", 384)
    assert spec.stage_names == ["embedding", "layer0", "layer1"]
    model = build_classifier(name, 3, weights="preset")
    expected = original({"images": pixels() * SCALE + OFFSET})
    np.testing.assert_allclose(backbone_of(model)(pixels()), expected, rtol=1e-4, atol=1e-4)
    # No --weights (the default, imagenet) means the preset's own, as keras-hub's from_preset loads them;
    # --weights none still starts from scratch.
    default = build_classifier(name, 3)
    np.testing.assert_allclose(backbone_of(default)(pixels()), expected, rtol=1e-4, atol=1e-4)
    fresh = build_classifier(name, 3, weights="none")
    assert not np.allclose(backbone_of(fresh)(pixels()), expected, rtol=1e-2, atol=1e-2)
    assert model.get_layer("pool").output.shape == (None, 2 * 384), "class token + mean of patches"

    groups = stage_layers(backbone_of(model), spec)
    owners = [id(w) for stage in groups.values() for layer in stage for w in layer.weights]
    assert sorted(owners) == sorted(id(w) for w in backbone_of(model).weights)

    model.save(tmp_path / "hub.keras")
    np.testing.assert_allclose(
        load_classifier(tmp_path / "hub.keras")(pixels(1)), model(pixels(1)), rtol=1e-5, atol=1e-6
    )


def test_dinov2_entry_loads_a_local_preset_as_weights(dino_preset):
    folder, original = dino_preset
    # The registry's dinov2_small14 has 12 blocks; a preset brings its own architecture.
    model = build_classifier("dinov2_small14", 3, image_size=SIZE, weights=str(folder))
    expected = original({"images": pixels() * SCALE + OFFSET})
    np.testing.assert_allclose(backbone_of(model)(pixels()), expected, rtol=1e-4, atol=1e-4)


def test_a_conv_preset_is_split_at_its_pyramid_levels(tmp_path):
    keras.utils.set_random_seed(0)
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    resnet.save_to_preset(str(tmp_path / "tiny_resnet"))
    spec = get_backbone(f"hub:{tmp_path / 'tiny_resnet'}")
    assert spec.output == "feature_map" and spec.stage_names == list(resnet.pyramid_outputs)
    backbone = spec.build((32, 32, 3))
    groups = stage_layers(backbone, spec)
    owners = [id(w) for stage in groups.values() for layer in stage for w in layer.weights]
    assert len(owners) == len(set(owners)) and set(owners) == {id(w) for w in backbone.weights}
    # Without an image converter in the preset, the model applies ImageNet's mean/std.
    np.testing.assert_allclose(spec.pretrained_cfg().mean, (0.485, 0.456, 0.406), rtol=1e-6)


def test_a_remote_preset_fails_within_seconds_offline_naming_the_local_folder(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match=r"save_to_preset\(DIR\) and pass --backbone hub:DIR"):
        get_backbone("hub:dinov2_base")
    assert time.monotonic() - start < 5


def test_preset_weights_are_refused_for_other_backbones():
    with pytest.raises(UserError, match=r"resnet50 takes a weights file; --weights preset .* hub:PRESET"):
        resolve_weights(get_backbone("resnet50"), "preset")


def test_the_dinov2_architecture_is_keras_hubs_published_preset():
    # keras-hub's dinov2_small preset metadata: 22,582,656 parameters, position embeddings for 518 px.
    backbone = get_backbone("dinov2_small14").build((518, 518, 3))
    assert backbone.count_params() == 22_582_656
    assert IMAGENET_SCALE[0] == pytest.approx(1 / (255 * 0.229)) and IMAGENET_OFFSET[0] < 0


def test_models_list_shows_a_presets_converter_scaling(dino_preset, capsys):
    import json

    from kerasimg.models import __main__ as models_cli

    folder, _ = dino_preset
    assert models_cli.main(["list", "--json", "--backbone", f"hub:{folder}"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["stages"] == ["embedding", "layer0", "layer1"] and row["output"] == "tokens"
    scaling = row["input_scaling"]
    # pixels / 127.5 - 1 written as (pixels / 255 - mean) / std: mean 0.5, std 0.5.
    assert scaling["mean"] == pytest.approx([0.5] * 3) and scaling["std"] == pytest.approx([0.5] * 3)
    assert row["imagenet_top1"] is None and row["pooling"] == "token_and_mean"
