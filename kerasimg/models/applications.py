"""Keras Applications backbones: ResNet50, DenseNet201, EfficientNetB0-B7, InceptionResNetV2.

Each factory builds the application without its top, named "backbone", from a
local weights path or none; fetching ImageNet weights is ``weights.py``'s job so
that a failed download can be reported in one sentence.
"""

from __future__ import annotations

import os

import keras

from kerasimg.models.registry import PretrainedWeights, register_backbone

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _keras_weights(weights: str | None, pretrained_file: str) -> str | None:
    """``"imagenet"`` when ``weights`` is the fetched ImageNet file, else ``weights``.

    Keras builds some applications differently for their ImageNet weights (EfficientNet
    adds a rescaling layer), so the fetched file must reach Keras as "imagenet"; Keras
    then finds it in its cache without touching the network.
    """
    if weights is not None and os.path.basename(weights) == pretrained_file:
        return "imagenet"
    return weights


@register_backbone(
    image_size=224,
    preprocessing="caffe",
    feature_dim=2048,
    family="resnet",
    stages=(
        ("stem", "pool1_"),
        ("conv2", "conv2_"),
        ("conv3", "conv3_"),
        ("conv4", "conv4_"),
        ("conv5", "conv5_"),
    ),
    pretrained=PretrainedWeights(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_APPS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
)
def resnet50(input_shape, weights=None):
    return keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=input_shape, name="backbone"
    )


@register_backbone(
    image_size=224,
    preprocessing="torch",
    feature_dim=1920,
    family="densenet",
    stages=(
        ("stem", "pool1"),
        ("block1", "pool2_"),
        ("block2", "pool3_"),
        ("block3", "pool4_"),
        ("block4", "conv5_"),
    ),
    pretrained=PretrainedWeights(
        "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_APPS + "densenet/densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "c13680b51ded0fb44dff2d8f86ac8bb1",
    ),
)
def densenet201(input_shape, weights=None):
    return keras.applications.DenseNet201(
        include_top=False, weights=weights, input_shape=input_shape, name="backbone"
    )


@register_backbone(
    image_size=299,
    preprocessing="tf",
    feature_dim=1536,
    family="inception_resnet",
    stages=(
        ("stem", "mixed_5b"),
        ("block35", "block35_"),
        ("block17", "block17_"),
        ("block8", "block8_"),
    ),
    pretrained=PretrainedWeights(
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_APPS + "inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "d19885ff4a710c122648d3b5c3b684e4",
    ),
)
def inception_resnet_v2(input_shape, weights=None):
    return keras.applications.InceptionResNetV2(
        include_top=False, weights=weights, input_shape=input_shape, name="backbone"
    )


# (application, default size, feature width, notop weights hash) for B0..B7.
_EFFICIENTNETS = {
    "b0": (keras.applications.EfficientNetB0, 224, 1280, "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": (keras.applications.EfficientNetB1, 240, 1280, "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": (keras.applications.EfficientNetB2, 260, 1408, "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": (keras.applications.EfficientNetB3, 300, 1536, "af6d107764bb5b1abb91932881670226"),
    "b4": (keras.applications.EfficientNetB4, 380, 1792, "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": (keras.applications.EfficientNetB5, 456, 2048, "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": (keras.applications.EfficientNetB6, 528, 2304, "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": (keras.applications.EfficientNetB7, 600, 2560, "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}

# The stem, the seven MBConv block groups, and the 1x1 top convolution with the rest.
_EFFICIENTNET_STAGES = (
    (("stem", "stem_"),) + tuple((f"block{i}", f"block{i}") for i in range(1, 8)) + (("top", "top_"),)
)


def _efficientnet_factory(application, variant):
    def factory(input_shape, weights=None):
        weights = _keras_weights(weights, f"efficientnet{variant}_notop.h5")
        return application(include_top=False, weights=weights, input_shape=input_shape, name="backbone")

    return factory


for _variant, (_application, _size, _width, _hash) in _EFFICIENTNETS.items():
    register_backbone(
        name=f"efficientnet_{_variant}",
        image_size=_size,
        # Keras's EfficientNet rescales and normalises inside the model.
        preprocessing="none",
        feature_dim=_width,
        family="efficientnet",
        stages=_EFFICIENTNET_STAGES,
        pretrained=PretrainedWeights(
            f"efficientnet{_variant}_notop.h5",
            f"https://storage.googleapis.com/keras-applications/efficientnet{_variant}_notop.h5",
            _hash,
        ),
    )(_efficientnet_factory(_application, _variant))
