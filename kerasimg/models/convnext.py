"""ConvNeXt (Liu et al., 2022) from ``keras.applications``: tiny, small, base, large, xlarge.

Keras's ConvNeXt normalises 0-255 pixels itself (a ``Normalization`` layer with
ImageNet's statistics, fixed at construction), so the classifier passes raw pixels.
Stages are ConvNeXt's own four: the 4x4 patchify stem, then stage 0..3, each opened by
its 2x2 downsampling block; the final LayerNorm Keras adds without a top joins stage 3.

Keras writes ConvNeXt's 7x7 depthwise convolutions as ``Conv2D(groups=channels)``,
which Keras's TensorFlow backend runs through an op-level XLA function that is very
slow on a CPU. The factory rebuilds each of them as the ``DepthwiseConv2D`` it is
(same names, same function, the kernel reshaped from ``[7, 7, 1, C]`` to
``[7, 7, C, 1]``), after Keras has loaded any weights, so the model stays plain Keras
layers and ImageNet files load as Keras publishes them.
"""

from __future__ import annotations

import os
import warnings

import keras

from kerasimg.models.keras_application import application_factory
from kerasimg.models.pretrained import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, PretrainedConfig
from kerasimg.models.registry import PretrainedWeights, register_backbone

_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/convnext/"
# variant: (Keras class, last-stage width, SHA-256 of Keras's notop ImageNet file, as in
# keras/src/applications/convnext.py)
VARIANTS = {
    "tiny": ("ConvNeXtTiny", 768, "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "small": ("ConvNeXtSmall", 768, "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    "base": ("ConvNeXtBase", 1024, "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    "large": ("ConvNeXtLarge", 1536, "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
    "xlarge": ("ConvNeXtXLarge", 2048, "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05"),
}


def _is_depthwise(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Conv2D)
        and 1 < layer.groups == layer.filters == layer.kernel.shape[-2] * layer.groups
    )


def depthwise_layers(model: keras.Model) -> keras.Model:
    """``model`` with every ``Conv2D(groups=channels)`` rebuilt as the equal ``DepthwiseConv2D``."""
    if not any(_is_depthwise(layer) for layer in model.layers):
        return model

    def rebuild(layer):
        if not _is_depthwise(layer):
            return layer.__class__.from_config(layer.get_config())
        return keras.layers.DepthwiseConv2D(
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            use_bias=layer.use_bias,
            name=layer.name,
            dtype=layer.dtype_policy,
        )

    inputs = keras.Input(batch_shape=model.inputs[0].shape, name=model.layers[0].name)
    rebuilt = keras.models.clone_model(model, input_tensors=inputs, clone_function=rebuild)
    for old, new in zip(model.layers, rebuilt.layers):
        weights = old.get_weights()
        if _is_depthwise(old):
            kernel = weights[0]
            weights[0] = kernel.reshape(*kernel.shape[:2], kernel.shape[-1], 1)
        new.set_weights(weights)
    rebuilt.name = model.name
    return rebuilt


def with_depthwise_layers(factory):
    """``factory`` whose model has its grouped depthwise convolutions rebuilt (``depthwise_layers``).

    A weights file in Keras's layout (ImageNet, or saved from ``keras.applications``) loads
    before the rebuild; one saved from this backbone (depthwise kernels) loads after it.
    """

    def build(input_shape, weights=None):
        # Keras warns about every container it skips before it fails on the first depthwise
        # kernel; those warnings are about the layout this function then loads, so only a
        # successful load shows them.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = depthwise_layers(factory(input_shape, weights))
            except ValueError:
                if weights is None or not os.path.isfile(weights):
                    raise
                model = None
        if model is not None:
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            return model
        model = depthwise_layers(factory(input_shape, None))
        model.load_weights(weights)
        return model

    build.__name__ = factory.__name__
    return build


def stages(prefix: str) -> tuple[tuple[str, str], ...]:
    return (("stem", f"{prefix}_stem"),) + tuple((f"stage{i}", f"{prefix}_stage_{i}_") for i in range(4))


for _variant, (_class, _width, _sha256) in VARIANTS.items():
    _name = f"convnext_{_variant}"
    register_backbone(
        name=_name,
        image_size=224,
        preprocessing="none",  # Keras's ConvNeXt normalises inside the model
        feature_dim=_width,
        family="convnext",
        stages=stages(_name),
        pretrained_cfg={
            "default": PretrainedConfig(
                224, scale=1 / 255.0, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB, in_model=True
            )
        },
        pretrained=PretrainedWeights(f"{_name}_notop.h5", f"{_ORIGIN}{_name}_notop.h5", _sha256),
    )(with_depthwise_layers(application_factory(getattr(keras.applications, _class), f"{_name}_notop.h5")))
