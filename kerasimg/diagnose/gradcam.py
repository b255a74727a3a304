"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The target activations ``A`` are what the registry names (``BackboneSpec.explain_split``):
a ConvNet's last feature map, ViT's patch tokens before its last encoder layer. Each
channel is weighted by the mean gradient of the class's log-probability over the
map, and the positive part of the weighted sum is the heat map. The log-probability
rather than the probability: a confident softmax has vanishing probability
gradients, its logarithm does not (and the classifier keeps no separate logits).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from kerasimg.errors import UserError
from kerasimg.models import get_backbone
from kerasimg.models.classifier import BACKBONE_LAYER


def _split(model: keras.Model, backbone_name: str):
    """``(to_target, from_target)``: images -> target activations -> probabilities."""
    names = [layer.name for layer in model.layers]
    if BACKBONE_LAYER not in names:
        raise UserError(
            f"Grad-CAM needs a kerasimg classifier (a layer named {BACKBONE_LAYER!r}); {model.name} has none."
        )
    at = names.index(BACKBONE_LAYER)
    before, after = model.layers[1:at], model.layers[at + 1 :]
    backbone = model.layers[at]
    spec = get_backbone(backbone_name)
    front, back = (
        spec.explain_split(backbone) if spec.explain_split else (backbone, lambda a, training=False: a)
    )

    def to_target(images):
        x = images
        for layer in before:
            x = layer(x, training=False)
        return front(x, training=False)

    def from_target(activations):
        x = back(activations, training=False)
        for layer in after:
            x = layer(x, training=False)
        return x

    return to_target, from_target


def _as_grid(activations: tf.Tensor) -> tf.Tensor:
    """A feature map as it is; tokens ``[B, T, C]`` as ``[B, g, g, C]``, a leading class token dropped."""
    if activations.shape.rank == 4:
        return activations
    tokens = activations.shape[1]
    side = math.isqrt(tokens)
    if side * side != tokens:
        activations, side = activations[:, 1:], math.isqrt(tokens - 1)
        if side * side != tokens - 1:
            raise UserError(f"Grad-CAM cannot lay {tokens} tokens on a square patch grid.")
    return tf.reshape(activations, (-1, side, side, activations.shape[-1]))


def grad_cam(
    model: keras.Model, images: np.ndarray, backbone: str, class_indices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(heat maps [N, h, w] in 0-1, probabilities [N, C])`` for images ``[N, size, size, 3]`` in 0-255.

    ``class_indices`` picks the class each map explains; by default the predicted one.
    A map with no positive evidence is all zeros.
    """
    to_target, from_target = _split(model, backbone)
    images = tf.convert_to_tensor(np.asarray(images, np.float32))
    activations = to_target(images)
    with tf.GradientTape() as tape:
        tape.watch(activations)
        probabilities = tf.cast(from_target(activations), tf.float32)
        if class_indices is None:
            class_indices = tf.argmax(probabilities, axis=1)
        chosen = tf.gather(probabilities, tf.cast(class_indices, tf.int32), batch_dims=1)
        score = tf.math.log(tf.maximum(chosen, 1e-12))
    gradients = _as_grid(tf.cast(tape.gradient(score, activations), tf.float32))
    grid = _as_grid(tf.cast(activations, tf.float32))
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * grid, axis=-1)).numpy()
    peaks = maps.max(axis=(1, 2), keepdims=True)
    maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
    return maps, probabilities.numpy()


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Heat maps resized (bilinear) to the image's ``size`` for overlays."""
    return tf.image.resize(maps[..., None], (size, size)).numpy()[..., 0]
