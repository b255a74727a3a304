"""Backbones (one registry, one file per family) and the classifier built on them."""

from kerasimg.models.registry import (  # noqa: I001  (the registry must exist before families register)
    BackboneSpec,
    get_backbone,
    list_backbones,
    register_backbone,
    register_load_hook,
    register_resolver,
)
from kerasimg.models.pretrained import PretrainedConfig, PretrainedWeights, WeightsSource
from kerasimg.models import (  # noqa: F401  (they register)
    applications,
    convnext,
    dinov2,
    efficientnet,
    efficientnet_v2,
    hub,
    mobilenet_v3,
    resnext,
    small_cnn,
    vit,
)
from kerasimg.models.classifier import backbone_of, build_classifier, load_classifier
from kerasimg.models.flops import count_flops
from kerasimg.models.stages import stage_layers

__all__ = [
    "BackboneSpec",
    "PretrainedConfig",
    "PretrainedWeights",
    "WeightsSource",
    "backbone_of",
    "build_classifier",
    "count_flops",
    "load_classifier",
    "get_backbone",
    "list_backbones",
    "register_backbone",
    "register_load_hook",
    "register_resolver",
    "stage_layers",
]
