"""The serving functions: JPEG/PNG bytes or raw pixels in, probabilities and top-k names out.

TF Serving's REST API decodes ``{"b64": ...}`` itself, so the bytes signature takes
``tf.string`` image bytes and the graph decodes, converts to RGB, turns upright by
EXIF and resizes them exactly as the training pipeline does; the model's first
layer applies the backbone's own scaling. An image whose header claims more than
``max_pixels`` is refused with ``InvalidArgument`` before it is decoded, and an
empty batch gets empty outputs. With ``tta="flip"`` (opt-in: it doubles the cost of
every request) both signatures return the mean of the probabilities of each image
and its mirror, as ``fit --tta flip`` evaluates.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasimg.data.decode import DEFAULT_MAX_PIXELS, decode_rgb
from kerasimg.data.pipeline import resize

BYTES_INPUT, PIXELS_INPUT = "image_bytes", "images"


def probabilities_of(model: keras.Model, images: tf.Tensor, tta: str = "none") -> tf.Tensor:
    """The model's float32 probabilities, averaged with those of the mirrored images for ``tta="flip"``."""
    probabilities = tf.cast(model(images, training=False), tf.float32)
    if tta == "flip":
        mirrored = tf.cast(model(tf.image.flip_left_right(images), training=False), tf.float32)
        probabilities = (probabilities + mirrored) / 2
    return probabilities


def make_outputs(
    model: keras.Model,
    class_names: list[str],
    top_k: int,
    tta: str = "none",
    thresholds: list[float] | None = None,
):
    """``images -> {probabilities, classes, scores, top_k_classes, top_k_scores}``.

    A multi-label model's ``thresholds`` (one per class) add ``predicted``: ``[N, C]`` booleans,
    each class's probability at or above its threshold.
    """
    labels = tf.constant(class_names)
    k = min(top_k, len(class_names))
    cuts = None if thresholds is None else tf.constant(thresholds, tf.float32)

    def outputs_of(probabilities):
        scores, indices = tf.math.top_k(probabilities, k=k)
        outputs = {
            "probabilities": probabilities,
            "classes": tf.gather(labels, indices[:, 0]),
            "scores": scores[:, 0],
            "top_k_classes": tf.gather(labels, indices),
            "top_k_scores": scores,
        }
        if cuts is not None:
            outputs["predicted"] = probabilities >= cuts
        return outputs

    def outputs(images):
        # An empty batch never reaches the model: BatchNorm and friends reject zero-sized inputs.
        return tf.cond(
            tf.shape(images)[0] > 0,
            lambda: outputs_of(probabilities_of(model, images, tta)),
            lambda: outputs_of(tf.zeros([0, len(class_names)], tf.float32)),
        )

    return outputs


def decode_batch(image_bytes: tf.Tensor, image_size: int, max_pixels: int | None = None) -> tf.Tensor:
    """``[N]`` encoded images -> ``[N, size, size, 3]`` float32 pixels in 0-255, upright."""

    def decode(one):
        return resize(decode_rgb(one, max_pixels), image_size)

    return tf.map_fn(
        decode, image_bytes, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32)
    )


def serving_functions(
    model: keras.Model,
    class_names: list[str],
    image_size: int,
    top_k: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tta: str = "none",
    thresholds: list[float] | None = None,
):
    """``(serving_default, predict_images)`` as ``tf.function``s with named input signatures."""
    outputs = make_outputs(model, class_names, top_k, tta, thresholds)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    def serving_default(image_bytes):
        return outputs(decode_batch(image_bytes, image_size, max_pixels))

    @tf.function(
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=PIXELS_INPUT)]
    )
    def predict_images(images):
        return outputs(images)

    return serving_default, predict_images
