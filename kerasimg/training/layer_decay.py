"""``--layer-decay F``: each backbone stage trains at F^k of the head's learning rate.

k is the stage's distance from the head in the registry's ordered ``stages`` (the
last stage is k = 1, the stem k = len(stages)), the fine-tuning recipe of BEiT/timm's
``param_groups_layer_decay``: the lower a layer, the more general its pretrained
features and the less it should move.

Keras optimizers have one learning rate, and scaling gradients does not scale Adam's
step (Adam divides the gradient by its own running size). So the multiplier scales
the rate itself: ``LayerDecay`` is a mixin over Keras's optimizers whose
``update_step`` receives each variable's rate times its multiplier. Decoupled weight
decay, which Keras applies with the optimizer's single rate, moves into that same
step so that it too follows the variable's rate (as in PyTorch param groups). The
multipliers are part of the optimizer's config, keyed by variable path, so a saved
``model.keras`` loads back with them. Schedules, EMA and gradient accumulation act
before or after ``update_step`` and are unchanged.
"""

from __future__ import annotations

import keras
from keras import ops

from kerasimg.models import backbone_of, stage_layers
from kerasimg.models.registry import BackboneSpec
from kerasimg.training.schedules import ALL, HEAD, Phase


def stage_multipliers(stage_names: list[str], decay: float) -> dict[str, float]:
    """``{stage: decay ** k}``, k = 1 for the stage under the head up to len(stages) for the first."""
    return {name: decay ** (len(stage_names) - i) for i, name in enumerate(stage_names)}


def stage_rates(phase: Phase, stage_names: list[str], decay: float) -> dict[str, float]:
    """The rate of each stage ``phase`` trains, the head first (shown per phase and in config.json)."""
    trained = [] if phase.unfrozen == HEAD else stage_names
    if phase.unfrozen not in (HEAD, ALL):
        trained = stage_names[stage_names.index(phase.unfrozen) :]
    multipliers = stage_multipliers(stage_names, decay)
    return {"head": phase.lr, **{name: phase.lr * multipliers[name] for name in reversed(trained)}}


def lr_multipliers(model: keras.Model, spec: BackboneSpec, decay: float) -> dict[str, float]:
    """``{variable path: multiplier}`` for every trainable backbone variable whose multiplier is not 1.

    Variables outside the backbone (the head) keep the optimizer's rate. Call it after
    the phase's trainable set is fixed, as ``compile`` is.
    """
    per_stage = stage_multipliers(spec.stage_names, decay)
    multipliers = {}
    for stage, layers in stage_layers(backbone_of(model), spec).items():
        if per_stage[stage] == 1.0:
            continue
        for layer in layers:
            for variable in layer.trainable_weights:
                multipliers[variable.path] = per_stage[stage]
    return multipliers


class LayerDecay:
    """Mixin for a Keras optimizer: the rate of each variable is multiplied by ``lr_multipliers[path]``."""

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}

    def build(self, variables):
        super().build(variables)
        # Indexed like the optimizer's own slots: update_step sees backend variables, not paths.
        self._lr_scales = [self.lr_multipliers.get(v.path, 1.0) for v in variables]

    def _apply_weight_decay(self, variables):
        """Moved into ``update_step``, where each variable's own rate is known."""

    def update_step(self, gradient, variable, learning_rate):
        scale = self._lr_scales[self._get_variable_index(variable)]
        learning_rate = ops.cast(learning_rate, variable.dtype)
        if scale != 1.0:
            learning_rate = learning_rate * scale
        if self.weight_decay is not None and self._use_weight_decay(variable):
            decay = ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, variable * decay * learning_rate)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


@keras.saving.register_keras_serializable(package="kerasimg")
class LayerDecayAdam(LayerDecay, keras.optimizers.Adam):
    """Adam with per-variable rate multipliers (see ``LayerDecay``)."""


@keras.saving.register_keras_serializable(package="kerasimg")
class LayerDecayAdamW(LayerDecay, keras.optimizers.AdamW):
    """AdamW with per-variable rate multipliers (see ``LayerDecay``)."""


@keras.saving.register_keras_serializable(package="kerasimg")
class LayerDecaySGD(LayerDecay, keras.optimizers.SGD):
    """SGD with per-variable rate multipliers (see ``LayerDecay``)."""


WITH_LAYER_DECAY = {
    keras.optimizers.Adam: LayerDecayAdam,
    keras.optimizers.AdamW: LayerDecayAdamW,
    keras.optimizers.SGD: LayerDecaySGD,
}
