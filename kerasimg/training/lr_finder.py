"""The learning-rate range test (Smith, 2015; fastai's ``lr_find``): one short ramp, one suggested rate.

The rate grows exponentially from ``min_lr`` to ``max_lr`` over ``steps`` training steps, one
batch each, and the loss of every batch is recorded. Its exponential moving average (bias
corrected, as fastai smooths it) falls while the rate is useful and explodes once it is too
large; the ramp stops there. Three rules read a rate off the smoothed curve:

- ``valley``: half-way down the longest stretch over which the loss keeps falling (fastai's
  default rule since 2.5): the longest decreasing subsequence of the smoothed curve, so a dip
  in the noise at the start of the ramp, where nothing can be learnt yet, cannot win;
- ``steepest``: where the loss falls fastest against log(rate), before its minimum;
- ``minimum``: a tenth of the rate at the minimum (the loss is still falling there, just).

The model's weights and optimizer are put back afterwards: the test only looks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from kerasimg.errors import UserError

RULES = ("valley", "steepest", "minimum")
DEFAULT_RULE = "valley"


@dataclass(frozen=True)
class LrFinding:
    """The ramp's rates and losses, and the rate ``rule`` suggests."""

    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    rule: str
    min_lr: float
    max_lr: float
    steps: int
    diverged: bool = field(default=False)

    def as_dict(self) -> dict:
        return asdict(self)


def check_range(min_lr: float, max_lr: float, steps: int) -> None:
    """One line naming the value when the ramp cannot run."""
    if not (isinstance(min_lr, int | float) and min_lr > 0 and math.isfinite(min_lr)):
        raise UserError(f"min_lr must be a positive number. Received: min_lr={min_lr!r}")
    if not (isinstance(max_lr, int | float) and max_lr > min_lr and math.isfinite(max_lr)):
        raise UserError(f"max_lr must be a number above min_lr={min_lr!r}. Received: max_lr={max_lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise UserError(f"steps must be an integer of at least 10. Received: steps={steps!r}")


def ramp(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """``steps`` rates spaced evenly in log from ``min_lr`` to ``max_lr``."""
    return np.geomspace(min_lr, max_lr, steps)


def smooth(losses, beta: float = 0.98) -> np.ndarray:
    """Exponential moving average with bias correction (the first values are not pulled to zero)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return np.asarray(out)


def suggest(rates, smoothed, rule: str = DEFAULT_RULE) -> float:
    """The rate ``rule`` reads off the smoothed curve (see the module docstring).

    ``steepest`` compares the loss across windows of a tenth of the ramp, not neighbouring
    steps: batch noise survives smoothing as wiggles whose local slopes say nothing.
    """
    if rule not in RULES:
        raise UserError(f"rule must be one of {RULES}. Received: rule={rule!r}")
    rates, smoothed = np.asarray(rates, float), np.asarray(smoothed, float)
    lowest = int(np.argmin(smoothed))
    if rule == "minimum":
        return float(rates[lowest] / 10)
    if rule == "valley":
        start, end = longest_descent(smoothed)
        return float(rates[start + (end - start) // 2])
    window = max(2, len(rates) // 10)
    if lowest < window:  # nothing falls before the minimum: the range starts too high
        return float(rates[0])
    logs = np.log(rates[: lowest + 1])
    slopes = (smoothed[window : lowest + 1] - smoothed[: lowest + 1 - window]) / (
        logs[window:] - logs[:-window]
    )
    start = int(np.argmin(slopes))
    return float(np.sqrt(rates[start] * rates[start + window]))  # the window's middle, in log


def longest_descent(values) -> tuple[int, int]:
    """``(start, end)``: where the longest strictly decreasing subsequence of ``values`` falls.

    The subsequence need not be contiguous (the loss wiggles up on its way down). As in fastai's
    ``valley``, the stretch is counted back from where the subsequence ends by its length, not
    from the value it starts at: one noisy early value (a lucky first batch) cannot stretch it.
    Quadratic in the ramp's length.
    """
    values = np.asarray(values, float)
    length = np.ones(len(values), int)  # the longest descent ending at each index
    for i in range(1, len(values)):
        higher = values[:i] > values[i]
        if higher.any():
            length[i] = length[:i][higher].max() + 1
    end = int(np.argmax(length))
    return end - int(length[end]) + 1, end


class _Ramp(keras.callbacks.Callback):
    """Sets each step's rate, keeps each batch's own loss, stops when the smoothed loss explodes."""

    def __init__(self, rates: np.ndarray, beta: float, diverge: float):
        super().__init__()
        self.rates, self.beta, self.diverge = rates, beta, diverge
        self.losses: list[float] = []
        self.diverged = False

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(float(self.rates[batch]))
        self.model.reset_metrics()  # so the logged loss is this batch's, not the epoch's running mean

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        self.losses.append(loss)
        smoothed = smooth(self.losses, self.beta)
        if not math.isfinite(loss) or (batch > 5 and smoothed[-1] > self.diverge * smoothed.min()):
            self.diverged = True
            self.model.stop_training = True


def find_learning_rate(
    model: keras.Model,
    dataset,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    rule: str = DEFAULT_RULE,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> LrFinding:
    """Run the range test on a compiled ``model`` (its optimizer's rate a variable) over ``dataset``.

    ``dataset`` yields training batches and is repeated as needed. The model's weights and its
    optimizer's state are restored afterwards.
    """
    check_range(min_lr, max_lr, steps)
    if rule not in RULES:
        raise UserError(f"rule must be one of {RULES}. Received: rule={rule!r}")
    optimizer = model.optimizer
    if optimizer is None or not isinstance(optimizer.learning_rate, keras.Variable):
        raise UserError("find_learning_rate needs a model compiled with a constant learning rate")
    weights = [np.array(w) for w in model.weights]
    rate = float(optimizer.learning_rate.numpy())
    rates = ramp(min_lr, max_lr, steps)
    callback = _Ramp(rates, beta, diverge)
    try:
        model.fit(
            dataset.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[callback], verbose=0, shuffle=False
        )
    finally:
        for variable, value in zip(model.weights, weights):
            variable.assign(value)
        for variable in optimizer.variables:  # moments and iteration count back to a fresh start
            variable.assign(np.zeros(variable.shape, variable.dtype))
        optimizer.learning_rate.assign(rate)
    losses = callback.losses
    kept = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    if len(kept) < 3:
        raise UserError(
            f"The loss was not finite from the first steps: lower min_lr or check the data. "
            f"Received: min_lr={min_lr!r}"
        )
    rates_seen = rates[: len(losses)][kept]
    smoothed = smooth([losses[i] for i in kept], beta)
    return LrFinding(
        rates=[float(r) for r in rates_seen],
        losses=[float(losses[i]) for i in kept],
        smoothed=[float(s) for s in smoothed],
        suggestion=suggest(rates_seen, smoothed, rule),
        rule=rule,
        min_lr=float(min_lr),
        max_lr=float(max_lr),
        steps=steps,
        diverged=callback.diverged,
    )


def range_test(
    data,
    *,
    backbone: str,
    weights: str,
    image_size: int | None,
    batch_size: int,
    recipe: str = "seed",
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    rule: str = DEFAULT_RULE,
    seed: int = 0,
    log=print,
) -> LrFinding:
    """The range test on the model ``fit`` starts from, over ``data``'s (a ``LabelledData``) training split.

    With pretrained ``weights`` only the head trains (the default schedule's first phase);
    with ``weights="none"`` everything. ``recipe`` chooses the optimizer, loss and augmentation.
    """
    from kerasimg.data import image_dataset
    from kerasimg.models import backbone_of, build_classifier, get_backbone
    from kerasimg.training.recipe import compile_classifier, resolve_recipe

    check_range(min_lr, max_lr, steps)
    chosen = resolve_recipe(recipe)
    size = int(get_backbone(backbone).image_size if image_size is None else image_size)
    keras.utils.set_random_seed(seed)
    model = build_classifier(backbone, len(data.class_names), size, weights)
    if weights != "none":
        backbone_of(model).trainable = False
    compile_classifier(model, min_lr, chosen)
    one_hot = len(data.class_names) if chosen.one_hot else None
    train = image_dataset(
        data.train, size, batch_size, training=True, augment=chosen.augment, seed=seed, num_classes=one_hot
    )
    log(
        f"Ramping the learning rate from {min_lr:g} to {max_lr:g} over {steps} steps "
        f"of {batch_size} images..."
    )
    return find_learning_rate(model, train, min_lr=min_lr, max_lr=max_lr, steps=steps, rule=rule)


def write_finding(finding: LrFinding, out) -> dict:
    """``lr_find.json``, ``lr_find.csv`` and the curve ``lr_find.png`` in folder ``out``; their paths."""
    from pathlib import Path

    from kerasimg.files import save_figure, write_json, write_text
    from kerasimg.training.reports import plt, styled

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = zip(finding.rates, finding.losses, finding.smoothed)
    csv = "lr,loss,smoothed_loss\n" + "".join(f"{r!r},{loss!r},{s!r}\n" for r, loss, s in rows)

    @styled
    def plot(path):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(finding.rates, finding.losses, color="#8c959f", lw=0.8, label="batch loss")
        ax.plot(finding.rates, finding.smoothed, lw=2, label="smoothed")
        ax.axvline(finding.suggestion, color="#d1242f", ls="--", label=f"suggested {finding.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        top = max(finding.smoothed[0], min(finding.smoothed)) * 2  # the explosion would hide the valley
        ax.set_ylim(min(finding.losses) * 0.9, max(top, min(finding.losses) * 1.5))
        ax.set_title(f"Learning-rate range test ({finding.rule} rule)")
        ax.legend()
        return save_figure(fig, path)

    paths = {
        "json": write_json(out / "lr_find.json", finding.as_dict()),
        "csv": write_text(out / "lr_find.csv", csv),
        "png": plot(out / "lr_find.png"),
    }
    return paths
