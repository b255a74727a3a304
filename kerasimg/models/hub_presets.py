"""keras-hub presets as backbones: where they come from, how they scale pixels, where their stages are.

Shared by the families built on keras-hub (``vit.py``, ``dinov2.py``, ``hub.py``):

- a ``--weights`` value naming a preset (``preset:NAME``, ``hf://``, ``kaggle://`` or a
  local folder written by ``save_to_preset``) and the fail-fast reachability check that
  turns an offline machine's minute of retries into one sentence in seconds;
- the preset's image converter as a ``Rescaling`` layer inside the Keras graph (keras-hub
  runs its preprocessor outside the model, where export would lose it, keras-hub#784);
- stages discovered from the layer structure: the embedding, then each transformer block
  of the encoder (a layer holding a list of same-class blocks), or a conv backbone's
  ``pyramid_outputs`` levels.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras

from kerasimg.errors import UserError, WeightsUnavailableError
from kerasimg.models.pretrained import WeightsSource
from kerasimg.models.registry import register_load_hook

PRESET_HOSTS = {"hf://": "huggingface.co", "kaggle://": "www.kaggle.com"}
# The name of the keras-hub model inside the "backbone" wrapper that adds the input scaling.
HUB_LAYER = "hub_backbone"


def is_preset(weights: str | None) -> bool:
    """Whether ``weights`` names a keras-hub preset rather than a Keras weights file."""
    if weights is None:
        return False
    return weights.startswith(("preset:", *PRESET_HOSTS)) or os.path.isdir(weights)


def preset_handle(weights: str) -> str:
    """A local preset folder as an expanded path; any other value as it is."""
    local = Path(weights).expanduser()
    return str(local) if local.is_dir() else weights


KERAS_HUB_PRESET = WeightsSource(
    name="keras_hub_preset",
    claims=lambda weights: is_preset(preset_handle(weights)),
    resolve=preset_handle,
    label="keras-hub presets",
    owners="the ViT and DINOv2 backbones",
    usage="a keras-hub preset (--weights preset:NAME or a preset folder)",
)


@register_load_hook
def _register_keras_hub_layers() -> None:
    """Saved classifiers on keras-hub models hold keras-hub layers, which importing keras-hub registers."""
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        pass


LOCAL_WEIGHTS_HINT = "pass --weights DIR, or pass --weights none"


def check_reachable(
    handle: str, backbone_class: str = "Backbone", timeout: float = 3.0, local_hint: str = LOCAL_WEIGHTS_HINT
) -> None:
    """Fail fast, naming the preset and the offline alternative, when its host is unreachable.

    ``local_hint`` says how to use the saved folder instead (``--weights DIR``, ``--backbone hub:DIR``).
    """
    if os.path.isdir(handle):
        return
    host = next((h for prefix, h in PRESET_HOSTS.items() if handle.startswith(prefix)), "www.kaggle.com")
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        raise WeightsUnavailableError(
            f"Could not load keras-hub preset {handle!r}: {host} is unreachable ({error}); on a connected "
            f"machine run keras_hub.models.{backbone_class}.from_preset({handle!r}).save_to_preset(DIR) and "
            f"{local_hint}."
        ) from None


def converter_scaling(handle: str, default: tuple) -> tuple:
    """``(scale, offset)`` of the preset's image converter, or ``default`` if it has none.

    A folder written by ``Backbone.save_to_preset`` alone holds no converter; a task's or
    a converter's ``save_to_preset`` adds one.
    """
    import keras_hub

    try:
        converter = keras_hub.layers.ImageConverter.from_preset(handle)
    except FileNotFoundError:
        return default
    return _json_safe(converter.scale, 1.0), _json_safe(converter.offset, 0.0)


def _json_safe(value, missing: float):
    if value is None:
        return missing
    if isinstance(value, list | tuple):
        return [float(v) for v in value]
    return float(value)


def wrap_with_scaling(hub_model: keras.Model, input_shape, scale, offset) -> keras.Model:
    """Raw 0-255 pixels -> ``Rescaling(scale, offset)`` -> ``hub_model``, as a model named "backbone"."""
    hub_model.name = HUB_LAYER  # presets carry their own name; stages look this one up
    inputs = keras.Input(tuple(input_shape))
    x = keras.layers.Rescaling(scale, offset, name="hub_rescaling")(inputs)
    if isinstance(hub_model.input, dict):  # keras-hub's image backbones take {"images": ...}
        (key,) = hub_model.input
        x = {key: x}
    return keras.Model(inputs, hub_model(x), name="backbone")


def _block_list(layer: keras.layers.Layer) -> list | None:
    """The transformer blocks a layer holds: a list attribute of two or more layers of one class."""
    for value in vars(layer).values():
        if (
            isinstance(value, list)
            and len(value) >= 2
            and all(isinstance(item, keras.layers.Layer) for item in value)
            and len({type(item) for item in value}) == 1
        ):
            return list(value)
    return None


def discover_stages(backbone: keras.Model) -> dict[str, list]:
    """``{stage: [layers]}`` of a wrapped keras-hub model, found from its layer structure.

    Transformers: "embedding" (every layer before the encoder), then "layer{i}" per block;
    the encoder's other sub-layers and every layer after it join the last block. Conv
    backbones with ``pyramid_outputs``: one stage per level, each holding the layers the
    level's output depends on that no earlier level holds.
    """
    hub_model = backbone.get_layer(HUB_LAYER)
    outer = [layer for layer in backbone.layers if layer is not hub_model]
    for position, layer in enumerate(hub_model.layers):
        blocks = _block_list(layer)
        if blocks is None:
            continue
        groups = {"embedding": outer + hub_model.layers[:position]}
        for i, block in enumerate(blocks):
            groups[f"layer{i}"] = [block]
        rest = [
            sub for sub in layer._flatten_layers(include_self=False, recursive=False) if sub not in blocks
        ]
        groups[f"layer{len(blocks) - 1}"] += rest + hub_model.layers[position + 1 :]
        return groups
    levels = getattr(hub_model, "pyramid_outputs", None) or {}
    if len(levels) >= 2:
        assigned: dict[int, str] = {}
        names = list(levels)
        for level in names[:-1]:
            for layer in keras.Model(hub_model.inputs, levels[level]).layers:
                assigned.setdefault(id(layer), level)
        groups = {level: [] for level in names}
        groups[names[0]] += outer
        for layer in hub_model.layers:
            groups[assigned.get(id(layer), names[-1])].append(layer)
        return groups
    raise UserError(
        f"Could not find stages in keras-hub's {type(hub_model).__name__}: it has neither a list of "
        "transformer blocks nor pyramid outputs, so freezing schedules cannot split it."
    )
