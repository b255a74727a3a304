"""The training recipe: loss, optimiser, learning-rate schedule, EMA, augmentation, TTA, as named presets.

``--recipe seed`` is the ported 2021 recipe exactly (random flip, Adam at a constant
rate per phase, plain cross-entropy). ``--recipe modern`` is the standard fine-tuning
recipe for pretrained backbones (crops, label smoothing, AdamW, warm-up and cosine decay,
flip TTA); on the synthetic demo set, from scratch, it measured worse than ``seed``
(see the README). Every setting has its own flag, which
overrides the preset; ``config.json`` records the resolved values. The compile step
is shared by fit, the tuning trials and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import keras

from kerasimg.data.augment import parse_augment
from kerasimg.errors import ArgumentError, UserError
from kerasimg.training.layer_decay import WITH_LAYER_DECAY
from kerasimg.training.multilabel import multilabel_loss, multilabel_metrics

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
TTA_MODES = ("none", "flip")
# Weight decay never applies to these (biases, normalisation scales and shifts, embeddings).
NO_DECAY = ["bias", "gamma", "beta", "embedding", "position", "token", "cls"]


@dataclass(frozen=True)
class Recipe:
    """Every recipe setting, resolved."""

    augment: str = "flip"
    label_smoothing: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    lr_schedule: str = "constant"
    ema: float = 0.0
    grad_accum: int = 1
    early_stop: int = 0
    class_weight: str = "none"
    tta: str = "none"
    # Each backbone stage trains at layer_decay**k of the head's rate (k stages below it); 1: all alike.
    layer_decay: float = 1.0

    @property
    def one_hot(self) -> bool:
        """Whether labels must be one-hot (label smoothing, MixUp, CutMix)."""
        return self.label_smoothing > 0 or parse_augment(self.augment).mixes_labels

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


RECIPES = {
    "seed": Recipe(),
    "modern": Recipe(
        augment="light",
        label_smoothing=0.1,
        optimizer="adamw",
        weight_decay=0.05,
        warmup_epochs=1.0,
        lr_schedule="cosine",
        tta="flip",
    ),
}
RECIPE_SETTINGS = tuple(f.name for f in dataclasses.fields(Recipe))


def resolve_recipe(name: str, **overrides) -> Recipe:
    """The preset ``name`` with every non-``None`` override applied, each checked."""
    if name not in RECIPES:
        raise ArgumentError("recipe", f"must be one of {', '.join(RECIPES)}", name)
    recipe = dataclasses.replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    recipe = dataclasses.replace(recipe, augment=parse_augment(recipe.augment).spec)
    if not 0 <= recipe.label_smoothing < 1:
        raise ArgumentError("label_smoothing", "must be in [0, 1)", recipe.label_smoothing)
    for name_, choices in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES), ("tta", TTA_MODES)):
        if getattr(recipe, name_) not in choices:
            raise ArgumentError(name_, f"must be one of {', '.join(choices)}", getattr(recipe, name_))
    for name_ in ("label_smoothing", "weight_decay", "warmup_epochs", "ema", "layer_decay"):
        if not math.isfinite(getattr(recipe, name_)):
            raise ArgumentError(name_, "must be a finite number", getattr(recipe, name_))
    if recipe.weight_decay < 0:
        raise ArgumentError("weight_decay", "must be at least 0", recipe.weight_decay)
    if recipe.warmup_epochs < 0:
        raise ArgumentError("warmup_epochs", "must be at least 0", recipe.warmup_epochs)
    if not (recipe.ema == 0 or 0 < recipe.ema < 1):
        raise ArgumentError("ema", "is a decay in (0, 1), or 0 for none", recipe.ema)
    if not 0 < recipe.layer_decay <= 1:
        raise ArgumentError(
            "layer_decay", "must be in (0, 1] (1: every stage at the head's rate)", recipe.layer_decay
        )
    if recipe.grad_accum < 1:
        raise ArgumentError("grad_accum", "must be at least 1", recipe.grad_accum)
    if recipe.early_stop < 0:
        raise ArgumentError("early_stop", "is a patience in epochs, or 0 for none", recipe.early_stop)
    if recipe.class_weight not in ("none", "auto"):
        read_class_weights(recipe.class_weight)
    return recipe


def read_class_weights(path: str) -> dict[str, float]:
    """A ``{class name: weight}`` JSON file, every weight a finite number >= 0; one line when it is not."""
    file = Path(path)
    if not file.is_file():
        raise ArgumentError("class_weight", "is none, auto or a JSON file of {class: weight}", path)
    try:
        given = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArgumentError("class_weight", f"could not be read as JSON ({error})", path) from None
    if not isinstance(given, dict) or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
        for w in given.values()
    ):
        raise ArgumentError("class_weight", "must hold a JSON object of class names to numbers >= 0", path)
    return {str(k): float(v) for k, v in given.items()}


def class_weights(recipe: Recipe, class_names: list[str], counts: list[int]) -> dict[int, float] | None:
    """Keras's ``class_weight``: inverse frequency normalised to mean 1 (``auto``), or from a JSON file."""
    if recipe.class_weight == "none":
        return None
    if recipe.class_weight == "auto":
        present = [c for c in counts if c > 0]
        return {i: sum(present) / (len(present) * c) if c else 0.0 for i, c in enumerate(counts)}
    given = read_class_weights(recipe.class_weight)
    unknown = sorted(set(given) - set(class_names))
    if unknown:
        raise ArgumentError(
            "class_weight", f"names classes the data does not have: {unknown}", recipe.class_weight
        )
    return {i: given.get(name, 1.0) for i, name in enumerate(class_names)}


def check_split_size(recipe: Recipe, train, data_name: str) -> None:
    """Schedules by step and ``auto`` class weights need the training split's size and counts."""
    if hasattr(train, "class_counts"):
        return
    needs = [
        flag
        for flag, used in (
            ("--lr-schedule cosine", recipe.lr_schedule == "cosine"),
            ("--warmup-epochs", recipe.warmup_epochs > 0),
            ("--class-weight auto", recipe.class_weight == "auto"),
        )
        if used
    ]
    if needs:
        raise UserError(
            f"{', '.join(needs)} need the training split's size and class counts, which "
            f"{data_name} does not give without reading it all; use --lr-schedule constant "
            "--warmup-epochs 0 --class-weight none (or a folder of images)."
        )


def train_counts(train, num_classes: int) -> list[int]:
    """Each class's number of training images; all 1 for a TFDS split (``check_split_size`` refuses
    ``auto`` weights there)."""
    if hasattr(train, "class_counts"):
        return train.class_counts(num_classes)
    return [1] * num_classes


def steps_per_epoch(train, batch_size: int) -> int:
    """Batches in an epoch of ``train``; 1 for a split of unknown size (schedules by step are refused)."""
    return max(1, -(-len(train) // batch_size)) if hasattr(train, "class_counts") else 1


def learning_rate(recipe: Recipe, lr: float, steps_per_epoch: int, epochs: int):
    """A phase's learning rate: constant or cosine, after a linear warm-up; restarts with each phase.

    Sized in batches: Keras evaluates the schedule at ``optimizer.iterations``, which counts
    every batch, accumulated ones included.
    """
    batches = max(1, steps_per_epoch)
    total = batches * epochs
    warmup = min(round(recipe.warmup_epochs * batches), total - 1)
    if recipe.lr_schedule == "constant" and warmup <= 0:
        return lr
    decay_steps = max(1, total - warmup) if recipe.lr_schedule == "cosine" else 10**12  # ~flat
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps, warmup_target=lr, warmup_steps=warmup)


def make_optimizer(
    recipe: Recipe, lr, lr_multipliers: dict[str, float] | None = None
) -> keras.optimizers.Optimizer:
    """The recipe's optimiser; with ``lr_multipliers`` (``{variable path: factor}``) a ``LayerDecay`` one."""
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}
    optimizer_class = classes[recipe.optimizer]
    extra = {}
    if lr_multipliers is not None:
        optimizer_class, extra = WITH_LAYER_DECAY[optimizer_class], {"lr_multipliers": lr_multipliers}
    common = dict(
        **extra,
        learning_rate=lr,
        use_ema=recipe.ema > 0,
        ema_momentum=recipe.ema or 0.99,
        gradient_accumulation_steps=recipe.grad_accum if recipe.grad_accum > 1 else None,
    )
    if recipe.optimizer == "adam":
        return optimizer_class(**common)
    if recipe.optimizer == "adamw":
        optimizer = optimizer_class(weight_decay=recipe.weight_decay, **common)
    else:
        optimizer = optimizer_class(
            momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay or None, **common
        )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def compile_classifier(
    model: keras.Model,
    lr,
    recipe: Recipe | None = None,
    lr_multipliers: dict[str, float] | None = None,
    *,
    multilabel: bool = False,
    weighted: bool = False,
    **compile_kwargs,
) -> keras.Model:
    """Compile with the recipe's optimiser and loss (the seed recipe: Adam, cross-entropy, accuracy).

    ``lr_multipliers`` are ``--layer-decay``'s (``layer_decay.lr_multipliers``). ``multilabel``:
    binary cross-entropy and the multi-label metrics (``kerasimg.training.multilabel``).
    ``weighted``: the metrics weigh each example by its sample weight, as the loss does (Keras
    leaves ``metrics`` unweighted): a multihost run's validation gives its padding weight 0.
    """
    recipe = recipe or RECIPES["seed"]
    metrics = ["accuracy"]
    if multilabel:
        loss = multilabel_loss(recipe.label_smoothing)
        metrics = multilabel_metrics(model.output_shape[-1])
    elif recipe.one_hot:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        optimizer=make_optimizer(recipe, lr, lr_multipliers),
        loss=loss,
        **{"weighted_metrics" if weighted else "metrics": metrics},
        **compile_kwargs,
    )
    return model
