"""kerasimg: transfer-learning image classification with Keras 3 and TensorFlow.

The flow is data -> model -> training -> export: ``kerasimg.data`` turns a folder,
the Intel layout, a TFDS name or the built-in ``scenes`` demo set into ``tf.data``
pipelines; ``kerasimg.models`` holds the registry of backbones and the classifier;
``kerasimg.training`` runs a fit into a run directory; ``kerasimg.serving`` exports
to the zoo and predicts. The entry points a user calls are here: ``fit``,
``load_model``, ``export``, ``predict``, ``audit`` and ``backbones`` (the README's "From Python"
section shows them; a test runs it). Importing kerasimg registers every custom layer,
so ``keras.saving.load_model`` reads a kerasimg ``model.keras`` too. The
``python -m kerasimg.*`` modules are thin CLIs.
"""

__version__ = "0.1.0"

from kerasimg.startup import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from kerasimg.api import audit, backbones, export, fit, load_model, predict  # noqa: E402

__all__ = ["__version__", "audit", "backbones", "export", "fit", "load_model", "predict"]
