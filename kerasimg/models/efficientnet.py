"""EfficientNet (Tan & Le, 2019): Keras's B0-B7 and a compound-scalable builder, from one table.

``keras.applications`` exports only the eight fixed B0-B7 models (its general
builder is private), so searching the compound coefficients needs a builder of our
own. ``EfficientNet(width, depth, resolution)`` builds the same layers, with the
same names and weights, as ``keras.applications.EfficientNetB0..B7`` for their
coefficients: MBConv blocks with expansion, depthwise convolution,
squeeze-and-excitation, swish and stochastic depth; channels rounded to multiples
of 8 and repeats rounded up as the reference does. ``compound(phi, alpha, beta,
gamma)`` turns the scaling rule into coefficients:
depth = alpha^phi, width = beta^phi, resolution = base * gamma^phi.

Both come from the tables below: ``efficientnet_b0`` .. ``efficientnet_b7`` are
Keras Applications' models (with their ImageNet weights) at ``KERAS_COEFFICIENTS``,
and any coefficients can be used as a backbone name, ``efficientnet_w1.2_d1.4_r300``;
the registry builds the entry on first use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import keras

from kerasimg.errors import UserError
from kerasimg.models.keras_application import keras_weights
from kerasimg.models.pretrained import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    PretrainedConfig,
    PretrainedWeights,
)
from kerasimg.models.registry import is_registered, register_backbone, register_resolver

# The B0 table: (kernel, repeats, channels in, channels out, expansion, stride, SE ratio) per stage.
B0_BLOCKS = (
    (3, 1, 32, 16, 1, 1, 0.25),
    (3, 2, 16, 24, 6, 2, 0.25),
    (5, 2, 24, 40, 6, 2, 0.25),
    (3, 3, 40, 80, 6, 2, 0.25),
    (5, 3, 80, 112, 6, 1, 0.25),
    (5, 4, 112, 192, 6, 2, 0.25),
    (3, 1, 192, 320, 6, 1, 0.25),
)
STEM_CHANNELS, TOP_CHANNELS, DIVISOR = 32, 1280, 8
# Keras Applications' coefficients: (width, depth, resolution, dropout).
KERAS_COEFFICIENTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
# MD5 of Keras's notop ImageNet weights for each variant above.
KERAS_NOTOP_MD5 = {
    "b0": "50bc09e76180e00e4465e1a485ddc09d",
    "b1": "74c4e6b3e1f6a1eea24c589628592432",
    "b2": "111f8e2ac8aa800a7a99e3239f7bfb39",
    "b3": "af6d107764bb5b1abb91932881670226",
    "b4": "ebc24e6d6c33eaebbd558eafbeedf1ba",
    "b5": "38879255a25d3c92d5e44e04ae6cec6f",
    "b6": "9ecce42647a20130c1f39a5d4cb75743",
    "b7": "cbcfe4450ddf6f3ad90b1b398090fe4a",
}
# The stem, the seven MBConv block groups, and the 1x1 top convolution with the rest.
STAGES = (("stem", "stem_"),) + tuple((f"block{i}", f"block{i}") for i in range(1, 8)) + (("top", "top_"),)
# He-style init scaled by fan-out, as the reference uses for convolutions.
_CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


@dataclass(frozen=True)
class Coefficients:
    width: float
    depth: float
    resolution: int


def compound(phi: float, alpha: float, beta: float, gamma: float, base_resolution: int = 224) -> Coefficients:
    """depth = alpha^phi, width = beta^phi, resolution = round(base_resolution * gamma^phi).

    With alpha * beta^2 * gamma^2 ~ 2, FLOPs grow by about 2^phi.
    """
    if min(alpha, beta, gamma) < 1:
        raise ValueError(f"alpha, beta and gamma must be >= 1. Received: {alpha}, {beta}, {gamma}")
    return Coefficients(width=beta**phi, depth=alpha**phi, resolution=round(base_resolution * gamma**phi))


def round_filters(filters: int, width: float, divisor: int = DIVISOR) -> int:
    """Scale channels by ``width``, to a multiple of ``divisor``, never more than 10% down."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def _stride2_padding(x, kernel_size: int):
    """Pad like the reference for a stride-2 "valid" convolution (one less at top/left on even sizes)."""
    height, width = x.shape[1], x.shape[2]
    adjust = (1, 1) if height is None else (1 - height % 2, 1 - width % 2)
    half = kernel_size // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


def apply_mbconv(x, filters_in, filters_out, kernel_size, stride, expand_ratio, se_ratio, drop_rate, name):
    """Mobile inverted bottleneck: expand 1x1, depthwise kxk, squeeze-excite, project 1x1, skip."""
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = keras.layers.Conv2D(
            filters,
            1,
            padding="same",
            use_bias=False,
            kernel_initializer=_CONV_INIT,
            name=f"{name}expand_conv",
        )(x)
        x = keras.layers.BatchNormalization(name=f"{name}expand_bn")(x)
        x = keras.layers.Activation("swish", name=f"{name}expand_activation")(x)
    padding = "same"
    if stride == 2:
        x = keras.layers.ZeroPadding2D(_stride2_padding(x, kernel_size), name=f"{name}dwconv_pad")(x)
        padding = "valid"
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=stride,
        padding=padding,
        use_bias=False,
        depthwise_initializer=_CONV_INIT,
        name=f"{name}dwconv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}bn")(x)
    x = keras.layers.Activation("swish", name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        squeezed = max(1, int(filters_in * se_ratio))
        se = keras.layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
        se = keras.layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
        se = keras.layers.Conv2D(
            squeezed,
            1,
            padding="same",
            activation="swish",
            kernel_initializer=_CONV_INIT,
            name=f"{name}se_reduce",
        )(se)
        se = keras.layers.Conv2D(
            filters,
            1,
            padding="same",
            activation="sigmoid",
            kernel_initializer=_CONV_INIT,
            name=f"{name}se_expand",
        )(se)
        x = keras.layers.Multiply(name=f"{name}se_excite")([x, se])
    x = keras.layers.Conv2D(
        filters_out,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name=f"{name}project_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:  # stochastic depth: drop the whole residual branch per example
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x


def EfficientNet(
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int = 224,
    dropout: float = 0.2,
    drop_connect: float = 0.2,
    input_shape: tuple[int, int, int] | None = None,
    include_top: bool = False,
    classes: int = 1000,
    name: str = "backbone",
) -> keras.Model:
    """EfficientNet scaled by ``width`` (channels), ``depth`` (repeats) and ``resolution``.

    Like Keras Applications, the model rescales 0-255 pixels itself (``Rescaling`` then
    a ``Normalization`` whose statistics come with the weights). ``dropout`` applies
    before the top classifier, ``drop_connect`` is the final stochastic-depth rate,
    growing linearly with block index.
    """
    problem = coefficient_problem(width, depth, resolution)
    if problem:
        raise ValueError(problem)
    inputs = keras.Input(input_shape or (resolution, resolution, 3))
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    x = keras.layers.Normalization(axis=-1, name="normalization")(x)
    x = keras.layers.ZeroPadding2D(_stride2_padding(x, 3), name="stem_conv_pad")(x)
    x = keras.layers.Conv2D(
        round_filters(STEM_CHANNELS, width),
        3,
        strides=2,
        padding="valid",
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name="stem_conv",
    )(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("swish", name="stem_activation")(x)
    total = sum(round_repeats(stage[1], depth) for stage in B0_BLOCKS)
    index = 0
    for stage, (kernel, repeats, c_in, c_out, expand, stride, se) in enumerate(B0_BLOCKS, 1):
        c_in, c_out = round_filters(c_in, width), round_filters(c_out, width)
        for repeat in range(round_repeats(repeats, depth)):
            x = apply_mbconv(
                x,
                c_in if repeat == 0 else c_out,
                c_out,
                kernel,
                stride if repeat == 0 else 1,
                expand,
                se,
                drop_connect * index / total,
                name=f"block{stage}{chr(ord('a') + repeat)}_",
            )
            index += 1
    x = keras.layers.Conv2D(
        round_filters(TOP_CHANNELS, width),
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name="top_conv",
    )(x)
    x = keras.layers.BatchNormalization(name="top_bn")(x)
    x = keras.layers.Activation("swish", name="top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(
            classes,
            activation="softmax",
            name="predictions",
            kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_out", "uniform"),
        )(x)
    return keras.Model(inputs, x, name=name)


_SCALED_NAME = re.compile(r"^efficientnet_w(\d+(?:\.\d+)?)_d(\d+(?:\.\d+)?)_r(\d+)$")


def _pretrained_cfg(resolution: int, imagenet: bool) -> dict[str, PretrainedConfig]:
    """The network scales 0-255 pixels itself, so every config is ``in_model``.

    Its ``Normalization`` holds ImageNet's statistics only once ImageNet weights are
    loaded; until then it is the identity.
    """
    configs = {"default": PretrainedConfig(resolution, scale=1 / 255.0, in_model=True)}
    if imagenet:
        configs["imagenet"] = PretrainedConfig(
            resolution, scale=1 / 255.0, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB, in_model=True
        )
    return configs


def _keras_factory(variant: str):
    application = getattr(keras.applications, f"EfficientNet{variant.upper()}")

    def factory(input_shape, weights=None):
        # Keras builds its EfficientNet differently for its ImageNet weights (it adds a rescaling
        # layer), so the fetched file must reach Keras as "imagenet".
        weights = keras_weights(weights, f"efficientnet{variant}_notop.h5")
        return application(include_top=False, weights=weights, input_shape=input_shape, name="backbone")

    return factory


for _variant, (_width, _depth, _resolution, _dropout) in KERAS_COEFFICIENTS.items():
    register_backbone(
        name=f"efficientnet_{_variant}",
        image_size=_resolution,
        # Keras's EfficientNet rescales and normalises inside the model.
        preprocessing="none",
        feature_dim=round_filters(TOP_CHANNELS, _width),
        family="efficientnet",
        stages=STAGES,
        pretrained_cfg=_pretrained_cfg(_resolution, imagenet=True),
        pretrained=PretrainedWeights(
            f"efficientnet{_variant}_notop.h5",
            f"https://storage.googleapis.com/keras-applications/efficientnet{_variant}_notop.h5",
            KERAS_NOTOP_MD5[_variant],
        ),
    )(_keras_factory(_variant))


def scaled_name(width: float, depth: float, resolution: int) -> str:
    """The registry name of the builder's network with these coefficients."""
    return f"efficientnet_w{width:.4g}_d{depth:.4g}_r{int(resolution)}"


def coefficient_problem(width: float, depth: float, resolution: int) -> str | None:
    """Why these coefficients build no network, or None."""
    if width <= 0 or depth <= 0 or resolution < 32:
        return (
            "EfficientNet needs width > 0, depth > 0 and resolution >= 32. "
            f"Received: width={width:g}, depth={depth:g}, resolution={resolution}"
        )
    return None


def register_scaled(width: float, depth: float, resolution: int) -> str:
    """Register (once) and return the registry name for these coefficients.

    Impossible coefficients are refused here, when the name is first looked up, rather
    than after the data is read and the network is being built.
    """
    problem = coefficient_problem(width, depth, resolution)
    if problem:
        raise UserError(f"{problem} (backbone={scaled_name(width, depth, resolution)!r}).")
    name = scaled_name(width, depth, resolution)
    if not is_registered(name):

        def factory(input_shape, weights=None):
            model = EfficientNet(width, depth, resolution, input_shape=input_shape)
            if weights is not None:
                model.load_weights(weights)
            return model

        register_backbone(
            name=name,
            image_size=int(resolution),
            preprocessing="none",
            feature_dim=round_filters(TOP_CHANNELS, width),
            family="efficientnet_builder",
            stages=STAGES,
            pretrained_cfg=_pretrained_cfg(int(resolution), imagenet=False),
        )(factory)
    return name


@register_resolver
def _resolve_scaled(name: str) -> bool:
    match = _SCALED_NAME.match(name)
    if not match:
        return False
    register_scaled(float(match[1]), float(match[2]), int(match[3]))
    return True


# The builder's B0, registered by name so it can be benchmarked and trained beside Keras's.
register_scaled(*KERAS_COEFFICIENTS["b0"][:3])
