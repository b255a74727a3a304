"""Serving: SavedModel export with image-bytes signatures, the zoo index and TF Serving config.

ONNX and LiteRT files go beside the SavedModel (``formats``, ``convert``) and run through
``runtimes``, the one place that knows how to call each format.

``export_model`` and ``export_run`` load TensorFlow; they are imported on first use so
that the zoo's index (``kerasimg.serving.zoo``) can be read without it.
"""

from kerasimg.serving.zoo import DEFAULT_ZOO, Zoo

__all__ = ["DEFAULT_ZOO", "Zoo", "export_model", "export_run"]


def __getattr__(name: str):
    if name in ("export_model", "export_run"):
        from kerasimg.serving import export

        return getattr(export, name)
    raise AttributeError(f"module 'kerasimg.serving' has no attribute {name!r}")
