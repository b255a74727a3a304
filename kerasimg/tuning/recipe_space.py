"""The recipe search space: which training settings ``tune recipe`` tries, as KerasTuner hyperparameters.

The settings that decide a fine-tune more than the backbone does: the learning rate and weight
decay (log-uniform), label smoothing, the augmentation (a preset, and for random-resized crops the
smallest area kept), the warm-up, the optimizer and the freezing schedule. Epochs are the
tuner's: Hyperband gives each trial its budget, and every trial stops early when validation
accuracy stalls. A range is ``[low, high]``; a one-element list or a plain value fixes the
setting. A space file (``--space FILE``, TOML) sets any of these keys; flags override it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import keras_tuner

from kerasimg.data.augment import OPERATIONS, PRESETS, parse_augment
from kerasimg.errors import UserError
from kerasimg.tomlfile import read_toml
from kerasimg.training.config import FitConfig
from kerasimg.training.recipe import LR_SCHEDULES, OPTIMIZERS, RECIPES
from kerasimg.training.schedules import NAMED_SCHEDULES

# Schedules whose phases do not name epochs, so they fit any budget Hyperband gives a trial.
EPOCH_FREE_SCHEDULES = tuple(s for s in NAMED_SCHEDULES if s != "probe-then-last")
CROP_KEY = "rrc"


@dataclass(frozen=True)
class RecipeSpace:
    lr: tuple[float, ...] = (1e-4, 3e-2)
    weight_decay: tuple[float, ...] = (1e-6, 1e-1)
    label_smoothing: tuple[float, ...] = (0.0, 0.2)
    # "none" too: mirrored digits, text or X-rays are other images, and the search must be able to say so.
    augment: tuple[str, ...] = ("none", "flip", "rrc,flip", "rrc,flip,randaugment:2:9")
    crop_scale: tuple[float, ...] = (0.08, 0.25, 0.5)
    warmup_epochs: tuple[float, ...] = (0.0, 1.0)
    optimizer: tuple[str, ...] = ("adamw", "adam", "sgd")
    lr_schedule: tuple[str, ...] = LR_SCHEDULES
    # None: the schedules that suit the weights (any for pretrained ones, "full" from scratch).
    schedule: tuple[str, ...] | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and not isinstance(value, (tuple, list)):
                value = (value,)
            if value is not None:
                object.__setattr__(self, field.name, tuple(value))

    def validate(self, pretrained: bool) -> None:
        """Every value checked before the first trial (a trial that raises is a failed trial)."""
        for name in ("lr", "weight_decay", "label_smoothing", "warmup_epochs", "crop_scale"):
            values = getattr(self, name)
            if not values or len(values) > (2 if name != "crop_scale" else 99):
                raise UserError(f"{name} is [low, high] or one value. Received: {name}={list(values)}")
            if any(
                not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in values
            ):
                raise UserError(f"{name} must be numbers. Received: {name}={list(values)}")
            if min(values) < 0 or (name in ("lr", "weight_decay") and min(values) <= 0):
                raise UserError(f"{name} must be positive. Received: {name}={list(values)}")
        if max(self.label_smoothing) >= 1:
            raise UserError(f"label_smoothing must be below 1. Received: {list(self.label_smoothing)}")
        if max(self.crop_scale) > 1:
            raise UserError(
                f"crop_scale is the smallest area kept, at most 1. Received: {list(self.crop_scale)}"
            )
        for spec in self.augment:
            if parse_augment(spec).mixes_labels:
                raise UserError(f"augment {spec!r} mixes labels; the search tries mixing-free augmentations.")
        for name, known in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES)):
            unknown = sorted(set(getattr(self, name)) - set(known))
            if unknown:
                raise UserError(f"{name} must be among {', '.join(known)}. Received: {unknown}")
        bad = sorted(set(self.schedules(pretrained)) - set(EPOCH_FREE_SCHEDULES))
        if bad:
            raise UserError(
                f"schedule must be among {', '.join(EPOCH_FREE_SCHEDULES)} (each trial's epochs are the "
                f"tuner's). Received: {bad}"
            )

    def schedules(self, pretrained: bool) -> tuple[str, ...]:
        if self.schedule is not None:
            return self.schedule
        return ("linear-probe", "last-block", "full") if pretrained else ("full",)

    def hyperparameters(self, pretrained: bool) -> keras_tuner.HyperParameters:
        """The space as KerasTuner declares it: ranges are log- or linear-uniform, lists are choices."""
        hp = keras_tuner.HyperParameters()
        for name, sampling in (("lr", "log"), ("weight_decay", "log"), ("label_smoothing", "linear")):
            low, high = min(getattr(self, name)), max(getattr(self, name))
            if low == high:
                hp.Fixed(name, float(low))
            else:
                hp.Float(name, low, high, sampling=sampling)
        choices = {
            "augment": self.augment,
            "crop_scale": tuple(float(v) for v in self.crop_scale),
            "warmup_epochs": tuple(float(v) for v in self.warmup_epochs),
            "optimizer": self.optimizer,
            "lr_schedule": self.lr_schedule,
            "schedule": self.schedules(pretrained),
        }
        for name, values in choices.items():
            values = tuple(dict.fromkeys(values))
            if len(values) == 1:
                hp.Fixed(name, values[0])
            else:
                hp.Choice(name, list(values))
        return hp

    def preset_points(self, pretrained: bool) -> dict[str, dict]:
        """The ``seed`` and ``modern`` recipes by name as points of this space (values outside it moved
        to its nearest edge or first choice), without repeats: the search tries them before any random
        point, so its winner is never worse on validation than the presets a user would otherwise
        guess."""
        hp = self.hyperparameters(pretrained)
        points = {}
        for name, recipe in RECIPES.items():
            augment = PRESETS.get(recipe.augment, recipe.augment)
            crop = dict(parse_augment(augment).operations).get(CROP_KEY, OPERATIONS[CROP_KEY][0])
            preset = {
                "lr": FitConfig.lr,
                "weight_decay": recipe.weight_decay,
                "label_smoothing": recipe.label_smoothing,
                "augment": augment,
                "crop_scale": float(crop[0]),
                "warmup_epochs": recipe.warmup_epochs,
                "optimizer": recipe.optimizer,
                "lr_schedule": recipe.lr_schedule,
                "schedule": FitConfig.schedule,
            }
            point = {p.name: _nearest(p, preset[p.name]) for p in hp.space}
            if point not in points.values():
                points[name] = point
        return points

    def to_dict(self) -> dict:
        return {k: (list(v) if v is not None else None) for k, v in dataclasses.asdict(self).items()}


def _nearest(parameter, value):
    """``value`` if ``parameter`` can take it, else its nearest bound, else its first choice."""
    if isinstance(parameter, keras_tuner.engine.hyperparameters.Fixed):
        return parameter.value
    if isinstance(parameter, keras_tuner.engine.hyperparameters.Choice):
        return value if value in parameter.values else parameter.values[0]
    return float(min(max(value, parameter.min_value), parameter.max_value))


def fit_settings(values: dict) -> dict:
    """A trial's hyperparameter values as ``FitConfig`` settings (``crop_scale`` goes into ``augment``).

    A trial that trains without flips is also evaluated without them: the base recipe's flip
    test-time augmentation would show its model mirrored images it never learnt (a mirrored 2).
    """
    augment = values["augment"]
    names = parse_augment(augment).names
    if CROP_KEY in names:
        augment = ",".join(
            f"{CROP_KEY}:{values['crop_scale']:g}" if op.split(":")[0] == CROP_KEY else op
            for op in augment.split(",")
        )
    return {
        "lr": float(values["lr"]),
        "weight_decay": float(values["weight_decay"]),
        "label_smoothing": float(values["label_smoothing"]),
        "augment": augment,
        "warmup_epochs": float(values["warmup_epochs"]),
        "optimizer": values["optimizer"],
        "lr_schedule": values["lr_schedule"],
        "schedule": values["schedule"],
        **({"tta": "none"} if "flip" not in names else {}),
    }


SPACE_SCHEMA = {
    "lr": "numbers",
    "weight_decay": "numbers",
    "label_smoothing": "numbers",
    "crop_scale": "numbers",
    "warmup_epochs": "numbers",
    "augment": "strings",
    "optimizer": "strings",
    "lr_schedule": "strings",
    "schedule": "strings",
}


def read_recipe_space(path) -> dict:
    """The keys of a recipe-space TOML file, each checked for its name and type (one line naming it)."""
    file = read_toml(path, "search-space file")
    return file.check(file.data, SPACE_SCHEMA)
