"""Backbone + head: the model that ``fit`` trains and ``export`` serves."""

from __future__ import annotations

import keras

from kerasimg.errors import UserError
from kerasimg.models.preprocessing import Preprocess
from kerasimg.models.registry import BackboneSpec, get_backbone
from kerasimg.models.weights import resolve_weights

BACKBONE_LAYER = "backbone"
# The first layer of the head: what comes before it are the features a frozen backbone yields.
HEAD_START = "head_dropout"


def build_classifier(
    backbone: str | BackboneSpec,
    num_classes: int,
    image_size: int | None = None,
    weights: str | None = "imagenet",
    dropout: float = 0.2,
) -> keras.Model:
    """Raw 0-255 RGB images in, class probabilities out.

    The graph is ``Preprocess`` -> backbone (a nested model named "backbone", so
    freezing schedules can reach its stages) -> global average pooling -> dropout
    -> ``Dense(num_classes, softmax)``. The head computes in float32 whatever the
    dtype policy, as Keras's mixed-precision guide asks.
    """
    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if num_classes < 2:
        raise UserError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    size = int(image_size or spec.image_size)
    if size < 32:
        raise UserError(f"Image size must be at least 32 pixels. Received: image_size={size}")
    weights_path = resolve_weights(spec, weights)
    inputs = keras.Input((size, size, 3), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    features = spec.build(input_shape=(size, size, 3), weights=weights_path)
    x = features(x)
    if spec.output == "feature_map":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name=HEAD_START)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_classifier")


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone model of a classifier built by ``build_classifier``."""
    return model.get_layer(BACKBONE_LAYER)
