"""Where a backbone's weights come from and what pixels they expect.

Three small records the registry stores per backbone, so that generic code
(``weights.py``, ``classifier.py``) never asks a family module:

- ``PretrainedWeights``: the ImageNet file ``keras.utils.get_file`` fetches.
- ``WeightsSource``: a kind of ``--weights`` value a family loads itself (a keras-hub
  preset, a PyTorch checkpoint); the weights hook.
- ``PretrainedConfig``: how one weight source scales its input, like timm's
  ``pretrained_cfg`` (input size, scale/offset, mean/std, channel order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# Caffe mode: BGR order, ImageNet mean in 0-255 units, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class PretrainedWeights:
    """A weights file that ``keras.utils.get_file`` fetches into ``$KERAS_HOME/models``."""

    file_name: str
    origin: str
    file_hash: str | None = None


@dataclass(frozen=True)
class WeightsSource:
    """A kind of ``--weights`` value that a family resolves and loads itself.

    ``weights.resolve_weights`` asks the backbone's own sources first; a value that
    another backbone's source claims is refused, naming who takes it.

    Attributes:
        name: The source's name, also its key in ``BackboneSpec.pretrained_cfg``.
        claims: ``claims(weights) -> bool``: whether a ``--weights`` value is one of these.
        resolve: ``resolve(weights) -> str``: what the factory receives (checked, made local).
        label: What they are, plural, for the refusal: "keras-hub presets".
        owners: Who takes them, for the refusal: "the ViT backbones".
        usage: How to pass one, for the hint when there are no ImageNet weights.
        pretrained_default: The value the default ``--weights imagenet`` stands for on a backbone
            that has no ImageNet file but pretrained weights of its own (a keras-hub preset's),
            as keras-hub's ``from_preset`` loads them unasked; ``None``: no such stand-in.
    """

    name: str
    claims: Callable[[str], bool]
    resolve: Callable[[str], str]
    label: str
    owners: str
    usage: str
    pretrained_default: str | None = None


@dataclass(frozen=True)
class PretrainedConfig:
    """The input one weight source expects from 0-255 RGB pixels, as timm's ``pretrained_cfg``.

    In ``channel_order``: ``(pixels * scale + offset - mean) / std``. ``in_model`` says
    the backbone applies this itself (Keras's EfficientNet, the ViT rescaling layer);
    otherwise the classifier's ``Preprocess`` layer does, from the spec's mode.
    """

    input_size: int
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    in_model: bool = False


def config_for_preprocessing(mode: str, input_size: int) -> PretrainedConfig:
    """The ``PretrainedConfig`` of a ``Preprocess`` mode, e.g. Keras ResNet's "caffe"."""
    if mode == "caffe":
        return PretrainedConfig(input_size, mean=CAFFE_MEAN_BGR, channel_order="BGR")
    if mode == "torch":
        return PretrainedConfig(input_size, scale=1 / 255.0, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB)
    if mode == "tf":
        return PretrainedConfig(input_size, scale=1 / 127.5, offset=-1.0)
    return PretrainedConfig(input_size, in_model=True)
