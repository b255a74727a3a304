"""The one compile recipe of a classifier, shared by fit, the tuning trials and the benchmarks."""

from __future__ import annotations

import keras


def compile_classifier(model: keras.Model, lr: float, **compile_kwargs) -> keras.Model:
    """Adam at ``lr``, sparse categorical cross-entropy and accuracy: the ported experiments' recipe."""
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        **compile_kwargs,
    )
    return model
