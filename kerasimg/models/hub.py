"""``hub:PRESET``: any keras-hub image backbone preset, or a local folder written by ``save_to_preset``.

``hub:dinov2_base``, ``hub:deit_base_distilled_patch16_224``, ``hub:/data/presets/my_swin``:
the registry entry is made on first use from the preset's architecture (its config, built
once without weights): image size, output kind (tokens or feature map), width, and stages
discovered from the layer structure (``hub_presets.discover_stages``). Input scaling is the
preset's image converter, inside the model; without one, ImageNet's mean/std.

Weights: ``--weights preset`` loads the preset's own weights; ``--weights none`` trains its
architecture from scratch; a Keras weights file loads into it. A remote preset's host is
checked first, so an offline machine fails in seconds naming the local-folder alternative.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.models.hub_presets import check_reachable, converter_scaling, discover_stages, wrap_with_scaling
from kerasimg.models.pooling import ClassAndMeanTokens, ClassToken
from kerasimg.models.pretrained import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, PretrainedConfig, WeightsSource
from kerasimg.models.registry import is_registered, register_backbone, register_resolver

PREFIX = "hub:"
PRESET_WEIGHTS = "preset"
IMAGENET_SCALING = (
    [1 / (255.0 * s) for s in IMAGENET_STD_RGB],
    [-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)],
)

HUB_PRESET_WEIGHTS = WeightsSource(
    name="hub_preset_weights",
    claims=lambda weights: weights == PRESET_WEIGHTS,
    resolve=lambda weights: weights,
    label="--weights preset (a preset's own weights)",
    owners="the hub:PRESET backbones",
    usage="the preset's own weights (--weights preset)",
    pretrained_default=PRESET_WEIGHTS,  # hub:PRESET with no --weights trains from the preset's weights
)


def handle_of(name: str) -> str:
    """The keras-hub preset handle in ``hub:HANDLE``: a local folder as an absolute path.

    A value that looks like a path (a separator, or a leading ``.`` or ``~``) and has no
    ``scheme://`` is a folder: a mistyped one is refused here, never looked up online.
    """
    handle = name.removeprefix(PREFIX)
    local = Path(handle).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if "://" not in handle and ("/" in handle or os.sep in handle or handle.startswith((".", "~"))):
        raise UserError(
            f"The keras-hub preset folder {str(local)!r} does not exist (a value with a path separator, "
            "or starting with . or ~, is a local folder written by save_to_preset). "
            f"Received: backbone={name!r}"
        )
    return handle


def _load(handle: str, input_shape=None, load_weights: bool = True) -> keras.Model:
    import keras_hub

    check_reachable(handle, local_hint="pass --backbone hub:DIR (the preset folder)")
    kwargs = {}
    if input_shape is not None:
        kwargs["image_shape"] = tuple(input_shape)
    try:
        return keras_hub.models.Backbone.from_preset(handle, load_weights=load_weights, **kwargs)
    except (ValueError, TypeError) as error:
        if os.path.isdir(handle) or "preset" in str(error).lower():
            gist = str(error).splitlines()[0]
            raise UserError(
                f"keras-hub could not load {handle!r} as an image backbone preset ({gist}). "
                f"Received: backbone={PREFIX + handle!r}"
            ) from None
        raise


def scaling_config(size: int, scale, offset) -> PretrainedConfig:
    """The converter's ``pixels * scale + offset`` as ``(pixels / 255 - mean) / std`` per channel."""
    scales = [scale] * 3 if isinstance(scale, float | int) else list(scale)
    offsets = [offset] * 3 if isinstance(offset, float | int) else list(offset)
    std = tuple(1 / (255.0 * s) for s in scales)
    mean = tuple(-o * sd for o, sd in zip(offsets, std))
    return PretrainedConfig(size, scale=1 / 255.0, mean=mean, std=std, in_model=True)


def _pooling(hub_model: keras.Model):
    """DINOv2-style class token + mean of patches for DINOv2, the class token for other transformers."""
    if type(hub_model).__name__.startswith("DINOV2"):
        prefix = 1 + int(getattr(hub_model, "num_register_tokens", 0))

        def token_and_mean(name):
            return ClassAndMeanTokens(prefix, name=name)

        return token_and_mean
    return lambda name: ClassToken(name=name)


def register_hub(name: str) -> None:
    """Register ``hub:HANDLE`` from the preset's architecture, built once without weights."""
    handle = handle_of(name)
    architecture = _load(handle, load_weights=False)
    image_shape = tuple(getattr(architecture, "image_shape", None) or (224, 224, 3))
    size = int(image_shape[0]) if image_shape[0] else 224
    scale, offset = converter_scaling(handle, IMAGENET_SCALING)
    output_rank = len(architecture.output_shape)
    wrapped = wrap_with_scaling(architecture, (size, size, 3), scale, offset)
    stages = discover_stages(wrapped)
    tokens = output_rank == 3

    def factory(input_shape, weights=None):
        hub_model = _load(
            handle, input_shape if tuple(input_shape) != image_shape else None, weights == PRESET_WEIGHTS
        )
        model = wrap_with_scaling(hub_model, input_shape, scale, offset)
        if weights is not None and weights != PRESET_WEIGHTS:
            model.load_weights(weights)
        return model

    register_backbone(
        name=name,
        image_size=size,
        preprocessing="none",  # the preset's image converter is a Rescaling layer inside
        feature_dim=int(architecture.output_shape[-1]),
        output="tokens" if tokens else "feature_map",
        pooling=_pooling(architecture) if tokens else "avg",
        family=f"hub:{type(architecture).__name__}",
        weights_sources=(HUB_PRESET_WEIGHTS,),
        pretrained_cfg={"default": scaling_config(size, scale, offset)},
        stages=tuple((stage, "") for stage in stages),
        stage_fn=discover_stages,
    )(factory)


@register_resolver
def _resolve_hub(name: str) -> bool:
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        return False
    if not is_registered(name):
        register_hub(name)
    return True
