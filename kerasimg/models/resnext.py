"""ResNeXt (Xie et al., 2017) exactly as torchvision defines it, in Keras.

Split-transform-merge: each bottleneck's 3x3 convolution is split into
``groups`` paths of ``width_per_group`` channels. ResNeXt-50 (32x4d) is a ResNet
with groups=32 and width 4 per group, as timm's ``resnext50_32x4d`` is; variants
are arguments to one builder. Padding is explicit and symmetric as in PyTorch
(Keras "same" pads stride-2 layers asymmetrically), so torchvision and timm
checkpoints port exactly (``kerasimg.models.torch_port``).
"""

from __future__ import annotations

import keras

from kerasimg.models.grouped_conv import GroupedConv2D
from kerasimg.models.pretrained import PretrainedWeights, WeightsSource
from kerasimg.models.registry import register_backbone
from kerasimg.models.torch_port import TORCH_SUFFIXES
from kerasimg.models.weights import existing_file

# torchvision's BatchNorm2d: eps 1e-5, momentum 0.1 (Keras counts momentum the other way).
_BN = {"epsilon": 1e-5, "momentum": 0.9}
STAGE_PLANES = (64, 128, 256, 512)
EXPANSION = 4


def apply_bottleneck(
    x, planes: int, stride: int, groups: int, width_per_group: int, name: str, fast_grouped_conv: bool = True
):
    """torchvision's ``Bottleneck``: 1x1 reduce, grouped 3x3 (carrying the stride), 1x1 expand."""
    width = int(planes * (width_per_group / 64.0)) * groups
    out_channels = planes * EXPANSION
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = keras.layers.Conv2D(
            out_channels, 1, strides=stride, use_bias=False, name=f"{name}_0_conv"
        )(x)
        shortcut = keras.layers.BatchNormalization(**_BN, name=f"{name}_0_bn")(shortcut)
    y = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_1_conv")(x)
    y = keras.layers.BatchNormalization(**_BN, name=f"{name}_1_bn")(y)
    y = keras.layers.ReLU(name=f"{name}_1_relu")(y)
    # "same" pads a stride-1 3x3 by one pixel on every side, as PyTorch does; with stride 2 it
    # would pad only bottom/right, so those blocks pad explicitly (an extra copy of the tensor).
    padding = "same"
    if stride != 1:
        y = keras.layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
        padding = "valid"
    if fast_grouped_conv:
        y = GroupedConv2D(width, 3, strides=stride, padding=padding, groups=groups, name=f"{name}_2_conv")(y)
    else:
        y = keras.layers.Conv2D(
            width, 3, strides=stride, padding=padding, groups=groups, use_bias=False, name=f"{name}_2_conv"
        )(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{name}_2_bn")(y)
    y = keras.layers.ReLU(name=f"{name}_2_relu")(y)
    y = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_3_conv")(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{name}_3_bn")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def ResNeXt(
    depths: tuple[int, ...] = (3, 4, 6, 3),
    groups: int = 32,
    width_per_group: int = 4,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = False,
    classes: int = 1000,
    fast_grouped_conv: bool = True,
    name: str = "backbone",
) -> keras.Model:
    """A torchvision-layout ResNeXt; ``include_top`` adds pooling and the 1000-way ``fc``.

    Stage ``i`` (``conv2`` .. ``conv5``) stacks ``depths[i]`` bottlenecks with
    ``STAGE_PLANES[i]`` planes; the first block of stages 3-5 has stride 2.
    """
    if len(depths) != len(STAGE_PLANES) or min(depths) < 1:
        raise ValueError(f"depths must be four positive block counts. Received: depths={depths}")
    if groups < 1 or width_per_group < 1:
        raise ValueError(
            f"groups and width_per_group must be positive. Received: {groups}, {width_per_group}"
        )
    inputs = keras.Input(input_shape)
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(**_BN, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    # Zero padding equals PyTorch's -inf padding here: the inputs are non-negative after ReLU.
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, (depth, planes) in enumerate(zip(depths, STAGE_PLANES)):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            x = apply_bottleneck(
                x,
                planes,
                stride,
                groups,
                width_per_group,
                f"conv{stage + 2}_block{block + 1}",
                fast_grouped_conv,
            )
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, name="fc")(x)
    return keras.Model(inputs, x, name=name)


_STAGES = (
    ("stem", "stem_"),
    ("conv2", "conv2_"),
    ("conv3", "conv3_"),
    ("conv4", "conv4_"),
    ("conv5", "conv5_"),
)
_TIMM = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
# torchvision/timm checkpoints, ported by ``_load``; other backbones refuse them by name.
TORCH_CHECKPOINT = WeightsSource(
    name="torch_checkpoint",
    claims=lambda weights: weights.endswith(TORCH_SUFFIXES),
    resolve=existing_file,
    label="PyTorch checkpoints",
    owners="the ResNeXt backbones",
    usage="a torchvision or timm checkpoint (--weights PATH.safetensors or .pth)",
)
_REGISTRY_FACTS = dict(
    image_size=224,
    preprocessing="torch",
    feature_dim=2048,
    family="resnext",
    stages=_STAGES,
    weights_sources=(TORCH_CHECKPOINT,),
)


def _load(model: keras.Model, weights: str | None) -> keras.Model:
    """Keras weights files load as they are; torchvision/timm checkpoints are ported."""
    if weights is None:
        return model
    from kerasimg.models.torch_port import load_torch_checkpoint

    if str(weights).endswith(TORCH_SUFFIXES):
        load_torch_checkpoint(model, weights)
    else:
        model.load_weights(weights)
    return model


@register_backbone(
    **_REGISTRY_FACTS,
    pretrained=PretrainedWeights(
        "resnext50_32x4d.a1h_in1k.safetensors", _TIMM.format("resnext50_32x4d.a1h_in1k")
    ),
)
def resnext50_32x4d(input_shape, weights=None):
    return _load(ResNeXt((3, 4, 6, 3), 32, 4, input_shape=input_shape), weights)


@register_backbone(
    **_REGISTRY_FACTS,
    pretrained=PretrainedWeights(
        "resnext101_32x8d.tv_in1k.safetensors", _TIMM.format("resnext101_32x8d.tv_in1k")
    ),
)
def resnext101_32x8d(input_shape, weights=None):
    return _load(ResNeXt((3, 4, 23, 3), 32, 8, input_shape=input_shape), weights)
