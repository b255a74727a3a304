"""How a backbone's output becomes one feature vector: global average or the class token.

A spec names its pooling ("avg" for feature maps, "token" for a transformer's class
token, as timm's ``global_pool``) or passes ``pool(name) -> layer`` of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


@keras.saving.register_keras_serializable(package="kerasimg")
class ClassToken(keras.layers.Layer):
    """The class token (position 0) of a ``[batch, tokens, width]`` sequence."""

    def call(self, tokens):
        return tokens[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


POOLINGS: dict[str, Callable[[str], keras.layers.Layer]] = {
    "avg": lambda name: keras.layers.GlobalAveragePooling2D(name=name),
    "token": lambda name: ClassToken(name=name),
}


def pooling_layer(pooling: str | Callable[[str], keras.layers.Layer], name: str) -> keras.layers.Layer:
    """The layer for a spec's ``pooling``: a name in ``POOLINGS`` or a ``pool(name)`` callable."""
    if callable(pooling):
        return pooling(name)
    return POOLINGS[pooling](name)
