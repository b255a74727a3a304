"""Backbones (one registry, one file per family) and the classifier built on them."""

from kerasimg.models.registry import (  # noqa: I001  (the registry must exist before families register)
    BackboneSpec,
    PretrainedWeights,
    get_backbone,
    list_backbones,
    register_backbone,
)
from kerasimg.models import applications, resnext, small_cnn  # noqa: F401  (families register themselves)
from kerasimg.models.classifier import backbone_of, build_classifier
from kerasimg.models.stages import stage_layers

__all__ = [
    "BackboneSpec",
    "PretrainedWeights",
    "backbone_of",
    "build_classifier",
    "get_backbone",
    "list_backbones",
    "register_backbone",
    "stage_layers",
]
