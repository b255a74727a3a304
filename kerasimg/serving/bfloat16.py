"""A SavedModel that computes in bfloat16: TF Serving has no precision switch, so the graph carries it.

TensorFlow's oneDNN kernels compute bfloat16 convolutions and matmuls natively on CPUs with
AVX512-BF16 or AMX (ResNet-50 inference 1.88x float32 there, ``bench --mode infer``). The copy
computes every layer under Keras's ``mixed_bfloat16`` policy (float32 variables, read in
bfloat16) except the layers that give the model's outputs, so a request's pixels and
probabilities stay float32. ``export`` keeps it where its top-1 matches the float32 model's on
at least ``MIN_BFLOAT16_AGREEMENT`` of the test images, and writes the choice into the
SavedModel (``SERVES_FILE``) so every reader of the folder knows what it computes in.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.serving.formats import MIN_BFLOAT16_AGREEMENT, SERVING_PRECISIONS
from kerasimg.training.precision import cpu_bf16_flags

# Beside TF Serving's warm-up requests: assets.extra is read by no one else.
SERVES_FILE = Path("assets.extra") / "kerasimg.json"


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX) that oneDNN runs TensorFlow on."""
    return bool(cpu_bf16_flags())


def wants_bfloat16(precision: str) -> bool:
    """Whether an export at ``precision`` measures a bfloat16 SavedModel (asked for, or ``auto`` here)."""
    return precision == "bfloat16" or (precision == "auto" and cpu_computes_bfloat16())


def computing_in_bfloat16(model: keras.Model) -> keras.Model:
    """A copy of ``model`` (same weights) whose layers compute in bfloat16, its output layers in float32."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    outputs = {id(tensor._keras_history.operation) for tensor in copy.outputs}
    for layer in copy._flatten_layers(include_self=False, recursive=True):
        if id(layer) not in outputs and not isinstance(layer, keras.layers.InputLayer):
            layer.dtype_policy = "mixed_bfloat16"
    return copy


def choose_savedmodel_precision(
    model: keras.Model, served: keras.Model, test_batches, precision: str
) -> tuple[keras.Model, dict]:
    """``(what the SavedModel computes, facts)`` for ``precision``; ``served`` is ``model`` folded.

    ``auto``: bfloat16 where this CPU computes it natively and the bfloat16 copy's top-1 matches
    ``model``'s on at least ``MIN_BFLOAT16_AGREEMENT`` of ``test_batches`` (``(pixels, labels)``
    pairs), float32 otherwise. ``float32`` and ``bfloat16`` are kept as asked (bfloat16 still measured).
    """
    from kerasimg.serving.convert import agreement_facts, keras_probabilities

    if precision not in SERVING_PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(SERVING_PRECISIONS)}. Received: {precision!r}")
    if not wants_bfloat16(precision):
        return served, {"serves": "float32"}
    copy = computing_in_bfloat16(served)
    facts = agreement_facts(model, lambda pixels: keras_probabilities(copy, pixels), test_batches, "bfloat16")
    chosen = precision
    if precision == "auto":
        chosen = "bfloat16" if facts["top1_agreement"] >= MIN_BFLOAT16_AGREEMENT else "float32"
    return (copy if chosen == "bfloat16" else served), {"serves": chosen, "bfloat16": facts}


def write_serves(folder: Path, precision: str) -> None:
    """Record in the SavedModel at ``folder`` what it computes in."""
    path = Path(folder) / SERVES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"serves": precision}) + "\n")


def savedmodel_serves(folder: Path) -> str:
    """What the SavedModel at ``folder`` computes in (float32 for one exported before the record)."""
    path = Path(folder) / SERVES_FILE
    if not path.exists():
        return "float32"
    try:
        serves = json.loads(path.read_text()).get("serves")
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"{path} is not readable JSON ({error}); export the model again.") from error
    if serves not in ("float32", "bfloat16"):
        raise UserError(f"{path} names {serves!r}, not float32 or bfloat16; export the model again.")
    return serves


def check_savedmodel_precision(folder: Path, precision: str) -> str:
    """The SavedModel's precision, refusing a ``precision`` it was not exported in (it has one graph)."""
    serves = savedmodel_serves(folder)
    if precision not in ("auto", serves):
        other = "float32" if serves == "bfloat16" else "bfloat16"
        raise UserError(
            f"The SavedModel in {folder} computes in {serves} (chosen when it was exported), not in "
            f"{precision}; use --precision auto, or export the run again with --precision {other}."
        )
    return serves
