"""How a backbone's output becomes one feature vector: global average, the class token, or both tokens.

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


@keras.saving.register_keras_serializable(package="kerasimg")
class ClassAndMeanTokens(keras.layers.Layer):
    """The class token joined with the mean of the patch tokens, DINOv2's linear-probe feature.

    ``prefix_tokens`` counts the tokens before the patches (the class token, and any
    register or distillation tokens), which the mean leaves out. Output width is twice
    the token width.
    """

    def __init__(self, prefix_tokens: int = 1, **kwargs):
        super().__init__(**kwargs)
        if prefix_tokens < 1:
            raise ValueError(f"prefix_tokens must be at least 1. Received: prefix_tokens={prefix_tokens}")
        self.prefix_tokens = int(prefix_tokens)

    def call(self, tokens):
        patches = keras.ops.mean(tokens[:, self.prefix_tokens :, :], axis=1)
        return keras.ops.concatenate([tokens[:, 0, :], patches], axis=-1)

    def compute_output_shape(self, input_shape):
        width = None if input_shape[2] is None else 2 * input_shape[2]
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "prefix_tokens": self.prefix_tokens}


POOLINGS: dict[str, Callable[[str], keras.layers.Layer]] = {
    "avg": lambda name: keras.layers.GlobalAveragePooling2D(name=name),
    "token": lambda name: ClassToken(name=name),
    "token+mean": lambda name: ClassAndMeanTokens(name=name),
}


def pooling_layer(pooling: str | Callable[[str], keras.layers.Layer], name: str) -> keras.layers.Layer:
    """The layer for a spec's ``pooling``: a name in ``POOLINGS`` or a ``pool(name)`` callable."""
    if callable(pooling):
        return pooling(name)
    return POOLINGS[pooling](name)
