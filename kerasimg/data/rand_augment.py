"""Keras's ``RandAugment``, running only the operations it draws.

Keras 3.15's ``RandAugment.transform_images`` computes every one of its candidate
operations for each of ``num_ops`` draws and keeps the drawn one with ``where``: at
224 px that is 2 x 14 image transformations a batch, about 10-16 images/s on one
core (``bench --mode input --augment randaugment``), slower than a ResNet-50 step
on two. ``tf.switch_case`` runs the drawn branch alone; the random draws and the
transformations themselves are Keras's, so the result is the same.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class SelectiveRandAugment(keras.layers.RandAugment):
    """``keras.layers.RandAugment`` whose ``transform_images`` runs only the drawn operation."""

    def transform_images(self, images, transformation, training=True):
        images = tf.cast(images, self.compute_dtype)
        if not training:
            return images
        transforms = transformation["transforms"]
        for i in range(self.num_ops):

            def branch(name, images=images):
                value = transforms[name]
                out = getattr(self, name).transform_images(images, value)
                return tf.ensure_shape(tf.cast(out, self.compute_dtype), images.shape)

            images = tf.switch_case(
                tf.cast(transformation["layer_idxes"][i], tf.int32),
                [lambda name=name, images=images: branch(name, images) for name in transforms],
            )
        return images
