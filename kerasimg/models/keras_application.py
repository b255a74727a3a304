"""A ``keras.applications`` model as a registry factory, with Keras's own names and weights.

Some applications decide their layers from the model's name (EfficientNetV2 picks its
input scaling from ``name``; ConvNeXt prefixes every layer with it and refuses ImageNet
weights under another name). So the model is built under Keras's name, exactly as
``keras.applications`` builds it, and renamed "backbone" afterwards. The ImageNet file
that ``weights.py`` fetched reaches Keras as ``"imagenet"``: Keras then finds it in its
cache (same file name, same hash) without touching the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import keras

BACKBONE_NAME = "backbone"


def keras_weights(weights: str | None, pretrained_file: str) -> str | None:
    """``"imagenet"`` when ``weights`` is the fetched ImageNet file, else ``weights``."""
    if weights is not None and os.path.basename(weights) == pretrained_file:
        return "imagenet"
    return weights


def application_factory(
    application: Callable[..., keras.Model], pretrained_file: str, **options
) -> Callable[..., keras.Model]:
    """``factory(input_shape, weights)`` building ``application`` without its top, named "backbone"."""

    def factory(input_shape, weights=None):
        model = application(
            include_top=False,
            weights=keras_weights(weights, pretrained_file),
            input_shape=tuple(input_shape),
            **options,
        )
        model.name = BACKBONE_NAME
        return model

    factory.__name__ = application.__name__
    return factory
