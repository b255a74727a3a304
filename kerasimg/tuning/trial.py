"""How every trial of a search trains: the settings shared by the space file, the oracle and the hypermodel.

Its own module, below ``space.py`` and ``hypermodel.py``, so that reading a space
file does not import the hypermodel that imports the oracle that imports the space.
"""

from __future__ import annotations

from dataclasses import dataclass

from kerasimg.data.augment import parse_augment
from kerasimg.errors import ArgumentError, UserError
from kerasimg.training.config import FitConfig
from kerasimg.training.recipe import Recipe, resolve_recipe


@dataclass(frozen=True)
class TrialTraining:
    """How every trial trains; equal for all trials so that scores compare.

    ``recipe`` is fit's (``seed`` or ``modern``), its learning-rate schedule sized to
    the trial's ``epochs``; ``augment`` overrides the recipe's augmentation.
    """

    data: str = "scenes"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    recipe: str = "seed"
    # None: the recipe's augmentation.
    augment: str | None = None
    val_split: float = 0.1
    seed: int = 0

    @property
    def resolved_recipe(self) -> Recipe:
        return resolve_recipe(self.recipe, augment=self.augment)

    def validate(self) -> None:
        """The checks ``fit`` makes, run before the first trial.

        A trial that raises is recorded by KerasTuner as failed and never offered
        again, so a wrong setting must stop the search before any trial starts.
        """
        if not isinstance(self.data, str) or not self.data:
            raise UserError(f"--data must name a data set. Received: data={self.data!r}")
        FitConfig(
            backbone="efficientnet_b0",
            data=self.data,
            weights="none",
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            recipe=self.recipe,
            augment=self.augment,
            val_split=self.val_split,
            seed=self.seed,
        ).validate()
        if parse_augment(self.resolved_recipe.augment).mixes_labels:
            raise ArgumentError(
                "augment", "mixes labels (mixup, cutmix), which the search's trials do not do", self.augment
            )
