"""One trial of the compound search: build the scaled EfficientNet, train it, report.

A ``keras_tuner.HyperModel`` whose ``fit`` also builds the data pipeline, because
every trial has its own input resolution (round(base * gamma^phi)). Trials start
from random weights: pretrained weights exist only for Keras's eight B0-B7
coefficient sets, never for an arbitrary triple, and every trial must start equal.
The report holds the validation accuracy (the objective) and the cost of the
network: parameters, FLOPs, resolution and training time.

A trial is a few hundred steps from random weights, so it trains as such a run
needs: fit's ``--recipe`` (``modern``: AdamW, warm-up then cosine decay, label
smoothing), BatchNorm statistics that settle fast, and no stochastic depth.
"""

from __future__ import annotations

import math
import time

import keras
import keras_tuner

from kerasimg.data import image_dataset, load_data
from kerasimg.models import backbone_of, build_classifier, count_flops
from kerasimg.models.efficientnet import compound, register_scaled
from kerasimg.progress import progress_verbosity
from kerasimg.training.recipe import compile_classifier, learning_rate
from kerasimg.tuning.oracle import OBJECTIVE
from kerasimg.tuning.trial import TrialTraining


class CompoundHyperModel(keras_tuner.HyperModel):
    """Builds ``EfficientNet`` from the trial's alpha, beta, gamma and phi; trains it on ``training.data``."""

    def __init__(
        self,
        training: TrialTraining,
        base_resolution: int,
        verbose: int | str = "auto",
        run_eagerly: bool = False,
    ):
        super().__init__(name="compound_efficientnet")
        self.training = training
        self.base_resolution = base_resolution
        self.verbose = verbose
        # Tracing a train graph costs ~45 s per EfficientNet on 2 cores; tiny test searches skip it.
        self.run_eagerly = run_eagerly
        self._data = None

    def prepare(self) -> None:
        """Check the settings and load the data before the first trial (see ``TrialTraining.validate``)."""
        self.training.validate()
        _ = self.data

    @property
    def data(self):
        """The data, loaded on first use: a chief that only serves the oracle never reads it."""
        if self._data is None:
            t = self.training
            self._data = load_data(t.data, val_split=t.val_split, seed=t.seed)
        return self._data

    def coefficients(self, hp):
        return compound(
            hp.get("phi"),
            hp.get("alpha"),
            hp.get("beta"),
            hp.get("gamma"),
            base_resolution=self.base_resolution,
        )

    def build(self, hp) -> keras.Model:
        keras.utils.set_random_seed(self.training.seed)  # every trial starts from the same draw
        c = self.coefficients(hp)
        model = build_classifier(
            register_scaled(c.width, c.depth, c.resolution),
            self.data.num_classes,
            image_size=c.resolution,
            weights="none",
        )
        _for_short_training(backbone_of(model))
        t = self.training
        recipe = t.resolved_recipe
        # A TFDS split has no length: its schedule is then sized as one batch per epoch, as fit's is.
        train = self.data.train
        steps = math.ceil(len(train) / t.batch_size) if hasattr(train, "__len__") else 1
        return compile_classifier(
            model, learning_rate(recipe, t.lr, steps, t.epochs), recipe, run_eagerly=self.run_eagerly
        )

    def fit(self, hp, model, callbacks=None, **kwargs) -> dict[str, float]:
        t = self.training
        recipe = t.resolved_recipe
        size = model.input_shape[1]
        num_classes = self.data.num_classes if recipe.one_hot else None
        train = image_dataset(
            self.data.train,
            size,
            t.batch_size,
            training=True,
            augment=recipe.augment,
            seed=t.seed,
            num_classes=num_classes,
        )
        val = image_dataset(self.data.val, size, t.batch_size, training=False, num_classes=num_classes)
        started = time.perf_counter()
        history = model.fit(
            train,
            validation_data=val,
            epochs=t.epochs,
            callbacks=callbacks,
            verbose=progress_verbosity() if self.verbose == "auto" else self.verbose,
            shuffle=False,  # the pipeline shuffles, seeded
        )
        seconds = time.perf_counter() - started
        best = max(range(len(history.history[OBJECTIVE])), key=history.history[OBJECTIVE].__getitem__)
        c = self.coefficients(hp)
        return {
            OBJECTIVE: float(history.history[OBJECTIVE][best]),
            "val_loss": float(history.history["val_loss"][best]),
            "params": float(model.count_params()),
            "flops": float(count_flops(model)),
            "resolution": float(c.resolution),
            "width": float(c.width),
            "depth": float(c.depth),
            "train_seconds": seconds,
        }


def _for_short_training(backbone: keras.Model) -> None:
    """Make a from-scratch EfficientNet trainable in a few hundred steps.

    Its BatchNorm already settles quickly (``build_classifier`` with ``weights="none"``), and
    stochastic depth is off here: dropping residual branches regularises long training, and in
    a short trial it only slows learning (every trial loses it alike, so scores still compare).
    """
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Dropout) and layer.name.endswith("_drop"):
            layer.rate = 0.0
