"""A SavedModel that computes in bfloat16: TF Serving has no precision switch, so the graph carries it.

TensorFlow's oneDNN kernels compute bfloat16 convolutions and matmuls natively on CPUs with
AVX512-BF16 or AMX (ResNet-50 served 1.86x float32 there, ``bench --mode serve``). The copy
computes every layer under Keras's ``mixed_bfloat16`` policy (float32 variables, read in
bfloat16) except the layers that give the model's outputs, so a request's pixels and
probabilities stay float32.

Only ``export --precision bfloat16`` writes it; ``auto`` keeps the SavedModel float32. A
SavedModel travels to TF Serving on CPUs the export never sees, and the graph cannot change
its mind there: on a CPU with AVX-512 but no bfloat16 instructions the same graph served at
0.38x float32, and with oneDNN held to AVX2 its convolutions failed to run at all. (OpenVINO's
``auto`` is safe: its runtime decides on the serving CPU.) The choice is written into the
SavedModel (``SERVES_FILE``) so every reader of the folder knows what it computes in.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.serving.formats import SERVING_PRECISIONS
from kerasimg.training.precision import cpu_bf16_flags

# Beside TF Serving's warm-up requests: assets.extra is read by no one else.
SERVES_FILE = Path("assets.extra") / "kerasimg.json"


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX) that oneDNN runs TensorFlow on."""
    return bool(cpu_bf16_flags())


def wants_bfloat16(precision: str) -> bool:
    """Whether an export at ``precision`` writes (and measures) a bfloat16 SavedModel: only when asked."""
    return precision == "bfloat16"


def computing_in_bfloat16(model: keras.Model) -> keras.Model:
    """A copy of ``model`` (same weights) whose layers compute in bfloat16, its output layers in float32."""
    return computing_in(model, "mixed_bfloat16")


def in_float32(model: keras.Model) -> keras.Model:
    """``model`` itself when every layer computes in float32, else a float32 copy with its weights.

    A run trained under ``mixed_bfloat16`` saves each layer's policy and loads back computing in
    bfloat16; exported as it is, its graph would compute in bfloat16 while recorded as float32.
    """
    layers = model._flatten_layers(include_self=False, recursive=True)
    if all(layer.compute_dtype == "float32" for layer in layers):
        return model
    return computing_in(model, "float32")


def computing_in(model: keras.Model, policy: str) -> keras.Model:
    """A copy of ``model`` with its weights, every layer under ``policy`` but the output layers (float32)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    outputs = {id(tensor._keras_history.operation) for tensor in copy.outputs}
    for layer in copy._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, keras.layers.InputLayer):
            layer.dtype_policy = "float32" if id(layer) in outputs else policy
    return copy


def check_bfloat16_export(precision: str) -> None:
    """Refuse ``--precision bfloat16`` on a CPU without bfloat16 before any work (one line)."""
    if wants_bfloat16(precision) and not cpu_computes_bfloat16():
        raise UserError(
            "--precision bfloat16: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX in "
            "/proc/cpuinfo), so a bfloat16 SavedModel could be neither checked nor served fast here; "
            "export it on the CPU class that will serve it, or leave --precision at auto (float32)."
        )


def choose_savedmodel_precision(
    model: keras.Model, served: keras.Model, test_batches, precision: str
) -> tuple[keras.Model, dict]:
    """``(what the SavedModel computes, facts)`` for ``precision``; ``served`` is ``model`` folded.

    ``bfloat16``: the bfloat16 copy, its top-1 agreement with ``model`` (and both accuracies where
    ``test_batches``, ``(pixels, labels)`` pairs, have labels) measured and returned, whatever it
    is, as for the OpenVINO file. ``auto`` and ``float32``: ``served`` itself.
    """
    from kerasimg.serving.convert import agreement_facts, keras_probabilities

    if precision not in SERVING_PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(SERVING_PRECISIONS)}. Received: {precision!r}")
    if not wants_bfloat16(precision):
        return served, {"serves": "float32"}
    check_bfloat16_export(precision)
    copy = computing_in_bfloat16(served)
    facts = agreement_facts(model, lambda pixels: keras_probabilities(copy, pixels), test_batches, "bfloat16")
    return copy, {"serves": "bfloat16", "bfloat16": facts}


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
    if serves == "bfloat16" and not cpu_computes_bfloat16():
        raise UserError(
            f"The SavedModel in {folder} computes in bfloat16, and this CPU has no bfloat16 "
            "instructions (AVX512-BF16 or AMX): TensorFlow would run it slowly or not at all here. "
            "Export the run again with --precision auto (float32) for this machine."
        )
    if precision not in ("auto", serves):
        other = "float32" if serves == "bfloat16" else "bfloat16"
        raise UserError(
            f"The SavedModel in {folder} computes in {serves} (chosen when it was exported), not in "
            f"{precision}; use --precision auto, or export the run again with --precision {other}."
        )
    return serves
