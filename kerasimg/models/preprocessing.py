"""Per-backbone input scaling as a layer, so saved and exported models take raw 0-255 pixels."""

from __future__ import annotations

import keras
from keras import ops

from kerasimg.models.pretrained import CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from kerasimg.models.registry import PREPROCESSING_MODES


@keras.saving.register_keras_serializable(package="kerasimg")
class Preprocess(keras.layers.Layer):
    """The same arithmetic as ``keras.applications.<family>.preprocess_input``, in the graph.

    Modes: ``caffe`` (RGB->BGR, minus the ImageNet mean; Keras ResNet), ``torch``
    (/255, minus mean, over std; DenseNet), ``tf`` (to [-1, 1]; Inception) and
    ``none`` (the backbone scales itself; EfficientNet).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"mode must be one of {PREPROCESSING_MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.array(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        if self.mode == "torch":
            mean = ops.array(IMAGENET_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.array(IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (images / 255.0 - mean) / std
        if self.mode == "tf":
            return images / 127.5 - 1.0
        return images

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
