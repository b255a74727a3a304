"""Keras Applications backbones: ResNet50, DenseNet201, InceptionResNetV2.

Each factory builds the application without its top, named "backbone", from a
local weights path or none; fetching ImageNet weights is ``weights.py``'s job so
that a failed download can be reported in one sentence. Keras's EfficientNetB0-B7
live with the EfficientNet builder in ``efficientnet.py``, beside their coefficients.
"""

from __future__ import annotations

import keras

from kerasimg.models.registry import PretrainedWeights, register_backbone

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


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
