"""ConvNeXt (Liu et al., 2022) from ``keras.applications``: tiny, small, base, large, xlarge.

Keras's ConvNeXt normalises 0-255 pixels itself (a ``Normalization`` layer with
ImageNet's statistics, fixed at construction), so the classifier passes raw pixels.
Stages are ConvNeXt's own four: the 4x4 patchify stem, then stage 0..3, each opened by
its 2x2 downsampling block; the final LayerNorm Keras adds without a top joins stage 3.
"""

from __future__ import annotations

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
    )(application_factory(getattr(keras.applications, _class), f"{_name}_notop.h5"))
