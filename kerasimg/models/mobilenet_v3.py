"""MobileNetV3 (Howard et al., 2019) from ``keras.applications``: small and large, width 1.0.

The edge choice: few parameters and FLOPs, hard-swish and squeeze-excite, and a graph
TFLite converts. Keras scales 0-255 pixels to [-1, 1] inside the model. Stages are the
expanded-conv blocks grouped by the resolution they output (output stride 2, 4, 8, 16,
32); the last 1x1 convolution joins the stride-32 group.
"""

from __future__ import annotations

import keras

from kerasimg.models.keras_application import application_factory
from kerasimg.models.pretrained import PretrainedConfig
from kerasimg.models.registry import PretrainedWeights, register_backbone

_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"


def _block_end(index: int) -> str:
    """The name prefix of the last layers of expanded-conv block ``index`` (block 0 has no number)."""
    return "expanded_conv_project" if index == 0 else f"expanded_conv_{index}_"


# variant: (Keras class, channels of the last 1x1 conv, layer-name prefix ending each stride group
# but the last, MD5 of Keras's notop ImageNet file as in keras/src/applications/mobilenet_v3.py)
VARIANTS = {
    # Large: block 0 keeps the stem's stride 2; blocks 1, 3, 6 and 12 halve the resolution.
    "large": (
        "MobileNetV3Large",
        960,
        (_block_end(0), _block_end(2), _block_end(5), _block_end(11)),
        "07fb09a5933dd0c8eaafa16978110389",
    ),
    # Small: blocks 0, 1, 3 and 8 halve the resolution.
    "small": (
        "MobileNetV3Small",
        576,
        ("conv_bn", _block_end(0), _block_end(2), _block_end(7)),
        "d3e8ec802a04aa4fc771ee12a9a9b836",
    ),
}

for _variant, (_class, _width, _ends, _md5) in VARIANTS.items():
    _file = f"weights_mobilenet_v3_{_variant}_224_1.0_float_no_top_v2.h5"
    register_backbone(
        name=f"mobilenetv3_{_variant}",
        image_size=224,
        preprocessing="none",  # Keras's MobileNetV3 rescales to [-1, 1] inside the model
        feature_dim=_width,
        family="mobilenetv3",
        stages=tuple(zip(("stride2", "stride4", "stride8", "stride16"), _ends)) + (("stride32", ""),),
        pretrained_cfg={"default": PretrainedConfig(224, scale=1 / 127.5, offset=-1.0, in_model=True)},
        pretrained=PretrainedWeights(_file, _ORIGIN + _file, _md5),
    )(application_factory(getattr(keras.applications, _class), _file))
