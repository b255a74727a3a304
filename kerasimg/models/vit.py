"""Vision Transformers from keras-hub (KerasCV, frozen upstream, has no ViT classifier).

The backbone is ``keras_hub.models.ViTBackbone`` wrapped so that the image
converter's scaling (``scale``, ``offset``) is a ``Rescaling`` layer inside the
Keras graph: keras-hub's task preprocessor runs outside the model and would be
lost on export (keras-hub#784), so saved and exported models take raw 0-255
pixels. Stages for freezing schedules are the patch embedding and each encoder
layer.

Weights: ``none``; ``preset:NAME`` or ``hf://...``/``kaggle://...`` (a keras-hub
preset, fetched by keras-hub); or a local preset folder written by
``save_to_preset``. Remote presets are checked for reachability first, so an
offline machine fails in seconds instead of after keras-hub's retries.

What generic code needs from this family it gets from the registry entry: class-token
pooling, the preset weights source (``KERAS_HUB_PRESET``), the default scaling as a
pretrained config, and a load hook that imports keras-hub before a saved model loads.
"""

from __future__ import annotations

import keras

from kerasimg.errors import WeightsUnavailableError
from kerasimg.models.hub_presets import (  # noqa: F401  (KERAS_HUB_PRESET and is_preset were defined here)
    KERAS_HUB_PRESET,
    PRESET_HOSTS,
    check_reachable,
    is_preset,
)
from kerasimg.models.pretrained import PretrainedConfig
from kerasimg.models.registry import register_backbone

# hidden size, heads, MLP size; all patch 16, 12 layers, 224 px.
VIT_SIZES = {"tiny": (192, 3, 768), "small": (384, 6, 1536), "base": (768, 12, 3072)}
NUM_LAYERS, PATCH_SIZE = 12, 16
# ViT's usual scaling to [-1, 1], used when no preset says otherwise.
DEFAULT_SCALE, DEFAULT_OFFSET = 1 / 127.5, -1.0


def _stages(backbone: keras.Model) -> dict[str, list]:
    vit = backbone.get_layer("vit_backbone")
    encoder = vit.get_layer("vit_encoder")
    groups = {"embedding": [vit.get_layer("vit_patching_and_embedding")]}
    for i, layer in enumerate(encoder.encoder_layers):
        groups[f"layer{i}"] = [layer]
    groups[f"layer{len(encoder.encoder_layers) - 1}"].append(encoder.layer_norm)
    return groups


def _explain_split(backbone: keras.Model):
    """Grad-CAM's target for ViT: the patch tokens entering the last encoder layer.

    The classifier pools the class token of the last layer's output, so gradients
    reach no patch token there; one layer earlier every patch token still feeds the
    class token through the last layer's attention (the choice pytorch-grad-cam's ViT
    example makes). ``front`` runs rescaling, patch embedding and all encoder layers
    but the last; ``back`` the last layer and the final norm.
    """
    rescaling = backbone.get_layer("vit_rescaling")
    vit = backbone.get_layer("vit_backbone")
    embedding, encoder = vit.get_layer("vit_patching_and_embedding"), vit.get_layer("vit_encoder")

    def front(images, training=False):
        x = embedding(rescaling(images))
        for layer in encoder.encoder_layers[:-1]:
            x = layer(x, training=training)
        return x

    def back(tokens, training=False):
        return encoder.layer_norm(encoder.encoder_layers[-1](tokens, training=training))

    return front, back


def _factory(size: str):
    hidden, heads, mlp = VIT_SIZES[size]

    def factory(input_shape, weights=None):
        import keras_hub

        scale, offset = DEFAULT_SCALE, DEFAULT_OFFSET
        if weights is not None and is_preset(weights):
            handle = weights.removeprefix("preset:")
            check_reachable(handle, "ViTBackbone")
            vit = keras_hub.models.ViTBackbone.from_preset(handle)
            converter = keras_hub.layers.ViTImageConverter.from_preset(handle)
            scale, offset = converter.scale, converter.offset
            if tuple(vit.image_shape) != tuple(input_shape):
                raise WeightsUnavailableError(
                    f"Preset {handle!r} is for {tuple(vit.image_shape)[:2]} px images; pass "
                    f"--image-size {vit.image_shape[0]}. Received: image_size={input_shape[0]}"
                )
        else:
            vit = keras_hub.models.ViTBackbone(
                image_shape=tuple(input_shape),
                patch_size=PATCH_SIZE,
                num_layers=NUM_LAYERS,
                num_heads=heads,
                hidden_dim=hidden,
                mlp_dim=mlp,
                name="vit_backbone",
            )
        vit.name = "vit_backbone"  # presets carry their own name; stages look this one up
        inputs = keras.Input(tuple(input_shape))
        x = keras.layers.Rescaling(scale, offset, name="vit_rescaling")(inputs)
        model = keras.Model(inputs, vit(x), name="backbone")
        if weights is not None and not is_preset(weights):
            model.load_weights(weights)
        return model

    return factory


for _size, (_hidden, _heads, _mlp) in VIT_SIZES.items():
    register_backbone(
        name=f"vit_{_size}16",
        image_size=224,
        preprocessing="none",  # the Rescaling layer above is the converter's scaling
        feature_dim=_hidden,
        output="tokens",
        pooling="token",
        family="vit",
        weights_sources=(KERAS_HUB_PRESET,),
        # Presets carry their own scaling (their image converter), read when the preset loads.
        pretrained_cfg={
            "default": PretrainedConfig(224, scale=DEFAULT_SCALE, offset=DEFAULT_OFFSET, in_model=True)
        },
        stages=(("embedding", ""),) + tuple((f"layer{i}", "") for i in range(NUM_LAYERS)),
        stage_fn=_stages,
        explain_split=_explain_split,
    )(_factory(_size))
