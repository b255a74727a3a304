"""kerasimg: transfer-learning image classification with Keras 3 and TensorFlow.

The flow is data -> model -> training -> export: ``kerasimg.data`` turns a folder,
the Intel layout, a TFDS name or the built-in ``scenes`` demo set into ``tf.data``
pipelines; ``kerasimg.models`` holds the registry of backbones and the classifier;
``kerasimg.training`` runs a fit into a run directory; ``kerasimg.serving`` exports
to the zoo and predicts. The entry points a user calls are here: ``fit``,
``load_model``, ``export``, ``predict``, ``audit``, ``pack``, ``lr_find`` and ``backbones``
(the README's "From Python" section shows them; a test runs it). Importing kerasimg registers
every custom layer, so ``keras.saving.load_model`` reads a kerasimg ``model.keras`` too (the ``kerasimg``
console script alone defers that until a command runs, so that its help needs no TensorFlow). The
``python -m kerasimg.*`` modules are thin CLIs.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

__all__ = ["__version__", "audit", "backbones", "export", "fit", "load_model", "lr_find", "pack", "predict"]


def load_library() -> None:
    """Import TensorFlow (quietly) and the library; ``import kerasimg`` does this unless run as the CLI."""
    if "load_model" in globals():  # once: a later call must not rebind kerasimg.fit etc. over submodules
        return
    from kerasimg.startup import filter_native_logs, import_tensorflow_quietly

    import_tensorflow_quietly()
    filter_native_logs()
    from kerasimg import api

    globals().update({name: getattr(api, name) for name in __all__[1:]})


def __getattr__(name: str):
    # The ``kerasimg`` console script skips the import above so that ``kerasimg --help`` answers
    # without TensorFlow; its commands call load_library() first, and so does any attribute used here.
    if name in __all__:
        load_library()
        return globals()[name]
    raise AttributeError(f"module 'kerasimg' has no attribute {name!r}")


_script = _os.path.basename((getattr(_sys, "argv", None) or [""])[0]).split(".")[0]
if _script not in ("kerasimg", "kerasimg-script"):
    load_library()
