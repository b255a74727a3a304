"""DINOv2 (Oquab et al., 2023) from keras-hub: ViT-S/14, ViT-B/14, ViT-L/14.

Self-supervised features that win linear probes, so the pooled feature is what the
paper's linear-probe protocol uses: the class token joined with the mean of the patch
tokens (``token+mean`` pooling, twice the token width). Pixels are scaled inside the model
(ImageNet mean/std, or the preset's own image converter). Stages: the patch embedding,
then each transformer block; the final LayerNorm joins the last block.

Weights: ``none``, or a keras-hub preset (``--weights preset:dinov2_small``, or a local
folder written by ``save_to_preset``), checked for reachability first as ViT's are.
Position embeddings are stored for 518 px, as the presets are, and interpolated to the
input size, so any multiple of the patch size works with pretrained weights.
"""

from __future__ import annotations

from kerasimg.models.hub_presets import (
    KERAS_HUB_PRESET,
    check_reachable,
    discover_stages,
    is_preset,
    wrap_with_scaling,
)
from kerasimg.models.pretrained import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, PretrainedConfig
from kerasimg.models.registry import register_backbone

PATCH_SIZE, PRESET_SIZE = 14, 518
# size: (keras-hub preset, hidden width, layers, heads, MLP width), as keras-hub's presets configure them.
DINOV2_SIZES = {
    "small": ("dinov2_small", 384, 12, 6, 1536),
    "base": ("dinov2_base", 768, 12, 12, 3072),
    "large": ("dinov2_large", 1024, 24, 16, 4096),
}
# ImageNet mean/std as (pixels * scale + offset), per channel: what DINOv2's image converter applies.
IMAGENET_SCALE = [1 / (255.0 * s) for s in IMAGENET_STD_RGB]
IMAGENET_OFFSET = [-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)]


def dinov2_config(size: str, image_size: int) -> dict:
    _, hidden, layers, heads, mlp = DINOV2_SIZES[size]
    return {
        "patch_size": PATCH_SIZE,
        "num_layers": layers,
        "hidden_dim": hidden,
        "num_heads": heads,
        "intermediate_dim": mlp,
        "image_shape": (image_size, image_size, 3),
        "position_embedding_shape": (PRESET_SIZE, PRESET_SIZE, 3),
    }


def _factory(size: str):
    def factory(input_shape, weights=None):
        import keras_hub

        from kerasimg.models.hub_presets import converter_scaling

        scale, offset = IMAGENET_SCALE, IMAGENET_OFFSET
        if weights is not None and is_preset(weights):
            handle = weights.removeprefix("preset:")
            check_reachable(handle, "DINOV2Backbone")
            hub_model = keras_hub.models.DINOV2Backbone.from_preset(handle, image_shape=tuple(input_shape))
            scale, offset = converter_scaling(handle, (scale, offset))
        else:
            hub_model = keras_hub.models.DINOV2Backbone(**dinov2_config(size, input_shape[0]))
        # The mask token only serves masked-image pretraining; frozen, it draws no "no gradient" warnings.
        hub_model.embeddings.mask_token.trainable = False
        model = wrap_with_scaling(hub_model, input_shape, scale, offset)
        if weights is not None and not is_preset(weights):
            model.load_weights(weights)
        return model

    return factory


for _size, (_preset, _hidden, _layers, _heads, _mlp) in DINOV2_SIZES.items():
    register_backbone(
        name=f"dinov2_{_size}14",
        image_size=224,
        preprocessing="none",  # the Rescaling layer inside is ImageNet's mean/std or the preset's converter
        feature_dim=_hidden,
        output="tokens",
        pooling="token+mean",
        family="dinov2",
        weights_sources=(KERAS_HUB_PRESET,),
        pretrained_cfg={
            "default": PretrainedConfig(
                224, scale=1 / 255.0, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB, in_model=True
            )
        },
        stages=(("embedding", ""),) + tuple((f"layer{i}", "") for i in range(_layers)),
        stage_fn=discover_stages,
    )(_factory(_size))
