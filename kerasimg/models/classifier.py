"""Backbone + head: the model that ``fit`` trains and ``export`` serves."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.models.pooling import pooling_layer
from kerasimg.models.preprocessing import Preprocess
from kerasimg.models.registry import BackboneSpec, get_backbone, name_slug, run_load_hooks
from kerasimg.models.weights import resolve_weights

BACKBONE_LAYER = "backbone"
PREPROCESS_LAYER = "preprocess"  # the layer feeding the backbone
# The layer whose output is the backbone's pooled features; the head is everything after it.
FEATURES_LAYER = "pool"
HEADS = ("linear", "mlp")
MIN_IMAGE_SIZE = 32


def build_classifier(
    backbone: str | BackboneSpec,
    num_classes: int,
    image_size: int | None = None,
    weights: str | None = "imagenet",
    dropout: float = 0.2,
    head: str = "linear",
    activation: str = "softmax",
) -> keras.Model:
    """Raw 0-255 RGB images in, class probabilities out.

    The graph is ``Preprocess`` -> backbone (a nested model named "backbone", so
    freezing schedules can reach its stages) -> the spec's pooling (global average, or
    the class token for ViT) -> dropout -> ``Dense(num_classes, softmax)``; the spec
    says which pooling and how ``weights`` resolve, so this code knows no family.
    ``head="mlp"`` puts Dense-GELU before the dropout, the ported work's "MLP on top
    of ViT". The output layer computes in float32 whatever the dtype policy, as
    Keras's mixed-precision guide asks; ``activation="sigmoid"`` makes each output the
    probability of its own class (multi-label data).
    """
    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if num_classes < 2:
        raise UserError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    if head not in HEADS:
        raise UserError(f"--head must be one of {HEADS}. Received: head={head!r}")
    size = int(spec.image_size if image_size is None else image_size)
    if size < MIN_IMAGE_SIZE:
        raise UserError(f"Image size must be at least {MIN_IMAGE_SIZE} pixels. Received: image_size={size}")
    weights_path = resolve_weights(spec, weights)
    inputs = keras.Input((size, size, 3), name="image")
    x = Preprocess(spec.preprocessing, name=PREPROCESS_LAYER)(inputs)
    features = spec.build(input_shape=(size, size, 3), weights=weights_path)
    if weights_path is None:
        settle_batch_norm_quickly(features)
    x = features(x)
    x = pooling_layer(spec.pooling, FEATURES_LAYER)(x)
    if head == "mlp":
        x = keras.layers.Dense(spec.feature_dim, activation="gelu", name="head_hidden")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation=activation, name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{name_slug(spec.name)}_classifier")


# The moving-average momentum of BatchNorm in a backbone trained from scratch. Keras's 0.99 (and the
# 0.999 of some families) leave the moving statistics near their initial values after a few hundred
# steps, so a model that fits its training batches predicts one class at inference (PyTorch's default
# is 0.9 in Keras's terms).
FROM_SCRATCH_BN_MOMENTUM = 0.9


def settle_batch_norm_quickly(model: keras.Layer) -> None:
    """Let every BatchNorm in ``model`` (nested ones too) follow its batch statistics at
    ``FROM_SCRATCH_BN_MOMENTUM`` or faster; saved with the layer's config."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, FROM_SCRATCH_BN_MOMENTUM)
        settle_batch_norm_quickly(layer)


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone model of a classifier built by ``build_classifier``."""
    return model.get_layer(BACKBONE_LAYER)


def load_classifier(path, class_names: list[str] | None = None) -> keras.Model:
    """Load a saved classifier; the families' load hooks run first (keras-hub's ViT layers).

    Always with Keras's ``safe_mode``: a ``.keras`` file that carries Python code
    (a ``Lambda`` layer's bytecode) is refused with one line, never run. A file that is
    not a ``.keras`` archive (random bytes, truncated) is one line too, and so is a model
    whose outputs do not match ``class_names`` when they are given (a run's classes).
    """
    run_load_hooks()
    corrupt = UserError(
        f"{path} is not a Keras model file: corrupt or truncated. Train the run again, or restore the "
        "file from a copy."
    )
    if Path(path).is_file() and str(path).endswith(".keras") and not zipfile.is_zipfile(path):
        raise corrupt
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, zlib.error):
        raise corrupt from None
    except ValueError as error:
        if "File not found" in str(error) and Path(path).is_file():
            raise corrupt from None
        if "safe_mode" not in str(error):
            raise
        raise UserError(
            f"Keras's safe_mode refused to load {path}: it holds Python code (such as a Lambda layer) "
            "that would run on loading. kerasimg never loads with safe_mode=False; load only models "
            "you trust, and rebuild this one without the lambda."
        ) from None
    if class_names is not None and model.output_shape[-1] != len(class_names):
        raise UserError(
            f"{path} has {model.output_shape[-1]} outputs but its run names {len(class_names)} classes "
            f"{class_names}; the model file does not belong to this run. Train the run again or restore "
            "its own model.keras."
        )
    return model
