"""EfficientNetV2 (Tan & Le, 2021) from ``keras.applications``: B0-B3, S, M, L.

Keras scales 0-255 pixels inside the model, and how depends on the variant: B0-B3
keep EfficientNet's ImageNet mean/std, S/M/L scale to [-1, 1]. Stages are the stem
and the Fused-MBConv/MBConv block groups (``block1`` .. ``block6``, ``block7`` for M
and L); the 1x1 top convolution joins the last group, so ``last-block`` trains the
final block group (as ResNet's trains conv5), not one lone 1x1 convolution.
"""

from __future__ import annotations

import keras

from kerasimg.models.keras_application import application_factory
from kerasimg.models.pretrained import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, PretrainedConfig
from kerasimg.models.registry import PretrainedWeights, register_backbone

_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"
# variant: (Keras class, Keras model name, image size, top channels, block groups, MD5 of Keras's
# notop ImageNet file as in keras/src/applications/efficientnet_v2.py)
VARIANTS = {
    "b0": ("EfficientNetV2B0", "efficientnetv2-b0", 224, 1280, 6, "893217f2bb855e2983157299931e43ff"),
    "b1": ("EfficientNetV2B1", "efficientnetv2-b1", 240, 1280, 6, "0e80663031ca32d657f9caa404b6ec37"),
    "b2": ("EfficientNetV2B2", "efficientnetv2-b2", 260, 1408, 6, "1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": ("EfficientNetV2B3", "efficientnetv2-b3", 300, 1536, 6, "f6abf7b5849ac99a89b50dd3fd532856"),
    "s": ("EfficientNetV2S", "efficientnetv2-s", 384, 1280, 6, "af0682fb74e8c54910f2d4393339c070"),
    "m": ("EfficientNetV2M", "efficientnetv2-m", 480, 1280, 7, "1b8dc055df72dde80d614482840fe342"),
    "l": ("EfficientNetV2L", "efficientnetv2-l", 480, 1280, 7, "b0b66b5c863aef5b46e8608fe1711615"),
}


def input_config(variant: str, image_size: int) -> PretrainedConfig:
    """What Keras's EfficientNetV2 does to 0-255 pixels, chosen by its model name."""
    if variant.startswith("b"):
        return PretrainedConfig(
            image_size, scale=1 / 255.0, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB, in_model=True
        )
    return PretrainedConfig(image_size, scale=1 / 128.0, offset=-1.0, in_model=True)


for _variant, (_class, _keras_name, _size, _top, _groups, _md5) in VARIANTS.items():
    _file = f"{_keras_name}_notop.h5"
    register_backbone(
        name=f"efficientnetv2_{_variant}",
        image_size=_size,
        preprocessing="none",  # Keras's EfficientNetV2 scales inside the model
        feature_dim=_top,
        family="efficientnetv2",
        stages=(("stem", "stem_"),) + tuple((f"block{i}", f"block{i}") for i in range(1, _groups + 1)),
        pretrained_cfg={"default": input_config(_variant, _size)},
        pretrained=PretrainedWeights(_file, _ORIGIN + _file, _md5),
    )(application_factory(getattr(keras.applications, _class), _file))
