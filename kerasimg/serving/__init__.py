"""Serving: SavedModel export with image-bytes signatures, the zoo index and TF Serving config."""

from kerasimg.serving.export import export_model, export_run
from kerasimg.serving.zoo import Zoo

__all__ = ["Zoo", "export_model", "export_run"]
