"""Freezing schedules: which part of the backbone trains in which epochs.

Keras 3 fixes the trainable set at ``compile()``, and an optimizer refuses
variables it was not built with. So a schedule is a list of phases; the driver
trains one phase at a time, and at each boundary re-freezes, recompiles with a
fresh optimizer and resumes at the boundary epoch, keeping one history.

A phase names the deepest stage it unfreezes: that stage and every stage above
it train, everything below stays frozen. ``head`` freezes the whole backbone,
``all`` unfreezes it. BatchNorm layers stay frozen (inference mode) unless asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from kerasimg.errors import UserError
from kerasimg.models import backbone_of, stage_layers
from kerasimg.models.registry import BackboneSpec

HEAD, ALL = "head", "all"
NAMED_SCHEDULES = ("linear-probe", "last-block", "gradual", "full", "probe-then-last")


@dataclass(frozen=True)
class Phase:
    """Epochs ``[start, end)`` train the head plus the stages from ``unfrozen`` up."""

    start: int
    end: int
    unfrozen: str
    lr: float

    @property
    def trains_backbone(self) -> bool:
        return self.unfrozen != HEAD

    def to_json(self) -> dict:
        return asdict(self)


def parse_schedule(
    schedule: str,
    stage_names: list[str],
    epochs: int,
    *,
    lr: float,
    finetune_lr: float,
    unfreeze_every: int = 2,
) -> list[Phase]:
    """Resolve a schedule name or spec into phases covering epochs ``0..epochs``.

    ``probe-then-last:N,M`` sets the total epochs to N + M itself. A spec such as
    ``"0:head,5:conv5,8:conv4"`` lists ``epoch:deepest unfrozen stage`` pairs.
    """
    name, _, argument = schedule.partition(":")
    starts: list[tuple[int, str]]
    if name == "linear-probe":
        starts = [(0, HEAD)]
    elif name == "last-block":
        starts = [(0, stage_names[-1])]
    elif name == "full":
        starts = [(0, ALL)]
    elif name == "gradual":
        if unfreeze_every < 1:
            raise UserError(f"--unfreeze-every must be at least 1. Received: unfreeze_every={unfreeze_every}")
        starts = [(0, HEAD)]
        for depth, stage in enumerate(reversed(stage_names), 1):
            if depth * unfreeze_every < epochs:
                starts.append((depth * unfreeze_every, stage))
    elif name == "probe-then-last":
        try:
            probe, last = (int(v) for v in argument.split(","))
            if probe < 1 or last < 1:
                raise ValueError
        except ValueError:
            raise UserError(
                "probe-then-last takes the epochs of each step, both at least 1, as "
                f"probe-then-last:N,M (e.g. probe-then-last:10,5). Received: schedule={schedule!r}"
            ) from None
        starts, epochs = [(0, HEAD), (probe, stage_names[-1])], probe + last
    elif ":" in schedule:
        starts = _parse_spec(schedule, stage_names)
    else:
        raise UserError(
            f"Unknown schedule. Use one of {', '.join(NAMED_SCHEDULES)}, or a spec such as "
            f"'0:head,5:{stage_names[-1]}'. Received: schedule={schedule!r}"
        )
    if starts[-1][0] >= epochs:
        raise UserError(
            f"Schedule {schedule!r} starts a phase at epoch {starts[-1][0]}, but training has only "
            f"{epochs} epochs; raise --epochs."
        )
    phases = []
    for i, (start, unfrozen) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else epochs
        phases.append(Phase(start, end, unfrozen, lr if unfrozen == HEAD else finetune_lr))
    return phases


def _parse_spec(spec: str, stage_names: list[str]) -> list[tuple[int, str]]:
    allowed = [HEAD, *stage_names, ALL]
    starts = []
    for item in spec.split(","):
        epoch_text, _, stage = item.strip().partition(":")
        try:
            epoch = int(epoch_text)
        except ValueError:
            raise UserError(
                f"A schedule item is EPOCH:STAGE. Received: {item.strip()!r} in {spec!r}"
            ) from None
        if stage not in allowed:
            raise UserError(
                f"Unknown stage {stage!r} in schedule {spec!r}; this backbone's stages are "
                f"{', '.join(allowed)}."
            )
        starts.append((epoch, stage))
    epochs = [e for e, _ in starts]
    if epochs[0] != 0 or epochs != sorted(set(epochs)):
        raise UserError(f"Schedule epochs must start at 0 and increase. Received: schedule={spec!r}")
    return starts


def describe(phase: Phase) -> str:
    """What ``phase`` unfreezes, for its log line."""
    if phase.unfrozen == HEAD:
        return "backbone frozen"
    if phase.unfrozen == ALL:
        return "backbone unfrozen"
    return f"backbone unfrozen from {phase.unfrozen} up"


def apply_phase(model: keras.Model, spec: BackboneSpec, phase: Phase, train_bn: bool = False) -> int:
    """Set ``trainable`` on the classifier's backbone for ``phase``; returns trainable parameters.

    Call ``compile()`` afterwards: Keras reads the trainable set there.
    """
    backbone = backbone_of(model)
    if phase.unfrozen == HEAD:
        backbone.trainable = False
    else:
        backbone.trainable = True
        groups = stage_layers(backbone, spec)
        order = list(groups)
        first = 0 if phase.unfrozen == ALL else order.index(phase.unfrozen)
        for index, stage in enumerate(order):
            for layer in groups[stage]:
                layer.trainable = index >= first
                if isinstance(layer, keras.layers.BatchNormalization) and not train_bn:
                    layer.trainable = False
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))
