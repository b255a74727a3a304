"""``--strategy none | mirrored | auto | multihost``: data-parallel training.

``mirrored`` is ``tf.distribute.MirroredStrategy`` over every local GPU, or over the
logical CPU devices when TensorFlow was configured with several and there is no GPU
(how the tests check it without a GPU). ``auto`` mirrors when more than one GPU is
visible. ``--batch-size`` is per replica; the global batch is that times the number
of replicas. Across machines, ``multihost`` trains under Keras's JAX backend with
``keras.distribution`` (``kerasimg.training.multihost``), since Keras 3's ``fit`` does
not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585).
"""

from __future__ import annotations

import tensorflow as tf

from kerasimg.errors import UserError

STRATEGIES = ("none", "mirrored", "auto", "multihost")
MULTIHOST = "multihost"


def resolve_strategy(name: str) -> tf.distribute.Strategy:
    """The TensorFlow strategy of ``name`` (``multihost`` is not one: see ``kerasimg.training.multihost``)."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    gpus = tf.config.list_logical_devices("GPU")
    if name in ("none", MULTIHOST) or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
