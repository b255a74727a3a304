"""Cutting a classifier at a stage boundary, for phases that train only the top stages.

While a phase trains the stages from ``S`` up, everything below ``S`` computes the
same function every epoch. The ``BOUNDARY`` phase source (``phase_sources``) caches
the activations at that boundary (``feature_cache`` stores them) and trains ``top``
on them: the layers from ``S`` up plus the head, the classifier's own layers, so the
classifier carries the result and BatchNorm behaves as on images (frozen layers stay
in inference mode, trainable ones follow ``--train-bn``).

A cut is valid only at a tensor that every later layer depends on solely through
it. ResNet shortcuts and DenseNet concatenations stay inside a stage in the
registry's stages, so the end of the stage below is such a tensor; Keras refuses
a functional model from that tensor when some connection skips over it, and the
cache is then refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from kerasimg.models import backbone_of
from kerasimg.models.classifier import FEATURES_LAYER, PREPROCESS_LAYER
from kerasimg.models.registry import BackboneSpec
from kerasimg.training.feature_cache import head_after
from kerasimg.training.schedules import ALL


def boundary_stage(phases, stage_names: list[str]) -> str | None:
    """The lowest stage that a phase before the first fully unfrozen one trains, or ``None``.

    One cut below it serves every such phase (and the frozen ones): the layers under it
    never train before that point, so their cached output stays valid.
    """
    trained = []
    for phase in phases:
        if phase.unfrozen == ALL:
            break
        if phase.trains_backbone:
            trained.append(stage_names.index(phase.unfrozen))
    return stage_names[min(trained)] if trained else None


class CutRefused(Exception):
    """The backbone cannot be cut below this stage; the message says why, for one log line."""


@dataclass(frozen=True)
class BoundarySplit:
    """Three models sharing the classifier's layers, cut below ``stage``.

    ``bottom``: images -> boundary activations; ``top``: activations -> probabilities;
    ``pooled``: activations -> the pooled features, what a frozen-backbone phase's head
    takes in, so one boundary extraction serves a linear probe too.
    """

    stage: str
    bottom: keras.Model
    top: keras.Model
    pooled: keras.Model


def split_at_stage(model: keras.Model, spec: BackboneSpec, stage: str) -> BoundarySplit:
    """Cut ``model`` (from ``build_classifier``) below ``stage``; ``CutRefused`` when it cannot be."""
    if spec.stage_fn is not None:
        raise CutRefused(f"{spec.name}'s stages live inside one layer, so there is no tensor between them")
    order = spec.stage_names
    position = order.index(stage)
    if position == 0:
        raise CutRefused(f"nothing of {spec.name} is frozen below its first stage {stage!r}")
    backbone = backbone_of(model)
    prefix = spec.stages[position - 1][1]
    end = [layer for layer in backbone.layers if layer.name.startswith(prefix)][-1]
    boundary = end.output
    try:
        upper = keras.Model(boundary, backbone.output, name="upper_stages")
    except ValueError:
        raise CutRefused(
            f"a connection of {spec.name} skips over the end of stage {order[position - 1]!r} "
            f"({end.name}), so the stages above it do not depend on that tensor alone"
        ) from None
    lower = keras.Model(backbone.inputs, boundary, name="lower_stages")
    bottom = keras.Model(model.inputs, lower(model.get_layer(PREPROCESS_LAYER).output), name="bottom")
    activations = keras.Input(tuple(boundary.shape[1:]), name="boundary")
    pool = model.get_layer(FEATURES_LAYER)
    pooled = pool(upper(activations))
    top = keras.Model(activations, head_after(model, pool, pooled), name="top")
    return BoundarySplit(stage, bottom, top, keras.Model(activations, pooled, name="top_features"))
