"""``python multihost_worker.py WEIGHTS_DIR 'JSON'``: one process of a test's multihost run.

Calls ``kerasimg.fit(**JSON)`` (the test sets ``KERAS_BACKEND=jax`` and Keras's
``KERAS_DISTRIBUTION_*`` variables) and keeps the weights this process ended training
with in ``WEIGHTS_DIR/process-<id>.npz``, so the test can compare the processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

import kerasimg
from kerasimg.training import multihost


class KeepFinalWeights(keras.callbacks.Callback):
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_train_end(self, logs=None):
        weights = [keras.ops.convert_to_numpy(w.value) for w in self.model.weights]
        np.savez(self.folder / f"process-{multihost.start().process_id}.npz", *weights)


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    kerasimg.fit(callbacks=[KeepFinalWeights(folder)], **json.loads(sys.argv[2]))
