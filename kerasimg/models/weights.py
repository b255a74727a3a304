"""Turn a ``--weights`` value into a local file, or fail in one clear sentence."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from kerasimg.errors import UserError, WeightsUnavailableError
from kerasimg.models.registry import BackboneSpec
from kerasimg.models.vit import is_preset


def keras_models_dir() -> Path:
    """Where ``keras.utils.get_file(cache_subdir="models")`` keeps downloads."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def resolve_weights(spec: BackboneSpec, weights: str | None) -> str | None:
    """Map ``imagenet`` | ``none`` | PATH to ``None`` or an existing local weights file.

    ``imagenet`` is fetched with ``keras.utils.get_file`` into ``$KERAS_HOME/models``
    (a cached copy is used without touching the network).
    """
    if weights is None or str(weights).lower() == "none":
        return None
    local = Path(weights).expanduser()
    if is_preset(str(local) if local.is_dir() else str(weights)):
        if spec.family != "vit":
            raise UserError(
                f"{spec.name} takes a weights file; keras-hub presets are for the ViT backbones. "
                f"Received: weights={str(weights)!r}"
            )
        return str(local) if local.is_dir() else str(weights)
    if weights == "imagenet":
        if spec.pretrained is None:
            hint = (
                " or a keras-hub preset (--weights preset:NAME or a preset folder)"
                if spec.family == "vit"
                else ""
            )
            raise UserError(
                f"Backbone {spec.name!r} has no ImageNet weights to fetch; pass --weights none "
                f"or --weights PATH{hint}. Received: weights='imagenet'"
            )
        wanted = spec.pretrained
        try:
            return keras.utils.get_file(
                wanted.file_name, wanted.origin, cache_subdir="models", file_hash=wanted.file_hash
            )
        except Exception as error:  # get_file raises a bare Exception on URL failures.
            raise WeightsUnavailableError(
                f"Could not get ImageNet weights for {spec.name}: {wanted.file_name} is not in "
                f"{keras_models_dir()} and downloading it from {wanted.origin} failed "
                f"({_first_line(error)}); put the file there, or pass --weights PATH for a local "
                f"weights file or --weights none to train from scratch."
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"The weights file does not exist. Pass --weights imagenet, none or the path to a "
            f"weights file. Received: weights={str(weights)!r}"
        )
    return str(path)


def _first_line(error: Exception) -> str:
    """The gist of an exception: its last line, without the URL that get_file repeats."""
    text = str(error).strip().splitlines()
    gist = text[-1] if text else type(error).__name__
    return gist.rsplit(" -- ", 1)[-1][:200]
