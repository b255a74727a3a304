"""Convert a classifier to ONNX and LiteRT files and check each against the Keras model before keeping it.

Keras's own exporters do the conversion (``model.export(format="onnx")`` through
tf2onnx, ``format="litert"`` through the TFLite converter, which takes the
converter's settings for float16 and int8, ``format="openvino"`` through OpenVINO's
``convert_model``). Each file is then run in its own
runtime (``kerasimg.serving.runtimes``): a float file must match the Keras
probabilities within its tolerance with the same top-1 on every validation image;
the int8 file, calibrated on training images, must pick the Keras model's top-1 on
at least ``MIN_INT8_AGREEMENT`` of the test images. A file that fails raises and
the caller throws the whole export away.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from kerasimg.errors import UserError
from kerasimg.serving.formats import FORMATS, MIN_BFLOAT16_AGREEMENT, MIN_INT8_AGREEMENT
from kerasimg.serving.runtimes import format_path, load_runtime

Batches = Callable[[], Iterable[np.ndarray]]
CHECK_BATCH = 32


@dataclass(frozen=True)
class CheckImages:
    """The pixels the formats are calibrated and checked on: each a fresh iterable of float32 0-255 batches.

    Attributes:
        calibration: Images the int8 converter measures activation ranges on.
        validation: Images every float format must match the Keras model on.
        test: ``(pixels, labels or None)`` batches the int8 file's top-1 agreement (and, with
            labels, its accuracy beside the float model's) is measured on.
        source: Where they came from, for messages and the zoo ("the run's splits").
    """

    calibration: Batches
    validation: Batches
    test: Batches
    source: str

    @classmethod
    def from_array(cls, pixels: np.ndarray, source: str, labels: np.ndarray | None = None) -> CheckImages:
        """The same images for all three uses (models without a run: tests, ``bench``)."""
        pixels = np.asarray(pixels, np.float32)
        # In batches of CHECK_BATCH, as a run's splits come: a runtime's memory grows with the batch.
        starts = range(0, len(pixels), CHECK_BATCH)
        batches = [pixels[i : i + CHECK_BATCH] for i in starts]
        pairs = [
            (pixels[i : i + CHECK_BATCH], None if labels is None else labels[i : i + CHECK_BATCH])
            for i in starts
        ]
        return cls(lambda: batches, lambda: batches, lambda: pairs, source=source)


def convert(model: keras.Model, name: str, path: Path, calibration: Batches) -> None:
    """Write ``model`` as format ``name`` at ``path``; a converter that fails becomes one clear error."""
    import tensorflow as tf

    # Given, not guessed: Keras's ONNX exporter refuses a model that was never called.
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="image")]
    if name == "onnx":
        from kerasimg.serving.onnx_ops import register

        register()
        options = {"format": "onnx", "input_signature": signature}
    elif name == "openvino":
        options = {"format": "openvino", "input_signature": signature}
    else:
        options = {"format": "litert", "input_signature": signature}
        if name == "litert-fp16":
            options.update(
                optimizations=[tf.lite.Optimize.DEFAULT], target_spec={"supported_types": [tf.float16]}
            )
        elif name == "litert-int8":
            options.update(
                optimizations=[tf.lite.Optimize.DEFAULT],
                representative_dataset=lambda: ([image[None]] for batch in calibration() for image in batch),
                # Integer kernels only, as edge accelerators need; the input is raw uint8 pixels.
                target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                inference_input_type=tf.uint8,
            )
    try:
        # The converters print pages of progress to stdout; a failure keeps its message below.
        quiet = contextlib.redirect_stdout(io.StringIO())
        with quiet, _constants_as_variables(model), warnings.catch_warnings():
            # Keras's ONNX bridge probes NumPy's removed `np.object` (NumPy's FutureWarning, not ours to fix).
            warnings.filterwarnings("ignore", message=r"In the future `np\.object`", category=FutureWarning)
            model.export(str(path), verbose=False, **options)
        if name == "openvino":
            _keep_the_model_output(path, model.output_shape)
    except Exception as error:
        raise UserError(
            f"Converting the model to {name} failed ({type(error).__name__}: {_first_line(error)}). "
            "The backbone table in docs/backbones.md lists the formats each family converts to; "
            "leave this one out of --format."
        ) from error


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _keep_the_model_output(path: Path, output_shape) -> None:
    """Drop the extra outputs OpenVINO's TensorFlow reader leaves in the file.

    TensorFlow's swish (``tf.nn.silu``) carries a custom gradient, an ``IdentityN`` whose
    second output nothing consumes; the reader turns each into a model output, so an
    EfficientNet-B0 file had 50 outputs, copied out on every call (2.3x slower than with
    one, and gigabytes of memory). The one kept has the Keras model's output shape; a file
    whose outputs do not single it out is left alone (``verify`` checks what it computes).
    """
    from kerasimg.serving.runtimes import rewrite_openvino

    def model_output_only(model):
        import openvino

        results = [
            r
            for r in model.get_results()
            if r.get_output_partial_shape(0).rank.get_length() == len(output_shape)
            and r.get_output_partial_shape(0)[-1].get_length() == output_shape[-1]
        ]
        if len(results) != 1 or len(model.get_results()) == 1:
            return model
        return openvino.Model(results, model.get_parameters(), model.get_friendly_name())

    rewrite_openvino(path, model_output_only)


@contextlib.contextmanager
def _constants_as_variables(model: keras.Model):
    """Hold every constant tensor a layer keeps as an attribute in a variable while converting.

    A traced function captures such tensors as inputs, and tf2onnx leaves captured
    tensors as ONNX graph inputs (onnxruntime then asks for ``normalization/Sub/y:0``)
    while it freezes captured variables into the graph. EfficientNet's ``Normalization``
    mean and variance and keras-hub ViT's position ids are such tensors.
    """
    import tensorflow as tf

    swapped = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for attribute, value in list(vars(layer).items()):
            if isinstance(value, tf.Tensor) and hasattr(value, "numpy"):  # eager, so a constant
                swapped.append((layer, attribute, value))
                # object.__setattr__: Keras must not track these as the layer's weights.
                object.__setattr__(layer, attribute, tf.Variable(value, trainable=False))
    try:
        yield
    finally:
        for layer, attribute, value in swapped:
            object.__setattr__(layer, attribute, value)


def verify(
    model: keras.Model,
    name: str,
    folder: Path,
    images: CheckImages,
    min_int8_agreement: float = MIN_INT8_AGREEMENT,
    precision: str = "auto",
) -> dict:
    """Run the ``name`` file of ``folder`` against ``model``; returns the figures, raises if it disagrees.

    An OpenVINO file is checked in float32, then ``precision`` decides what it serves in
    (``choose_precision``)."""
    try:
        runtime = load_runtime(folder, name, "float32")
        runtime(next(iter(images.validation()))[:1])
    except UserError:
        raise
    except Exception as error:  # a converter that wrote an op its own runtime cannot run
        raise UserError(
            f"The {name} file was written but its runtime cannot run it ({type(error).__name__}: "
            f"{_first_line(error)}). The backbone table in docs/backbones.md lists the formats each "
            "family converts to; leave this one out of --format."
        ) from error
    if name == "litert-int8":
        facts = agreement_facts(model, runtime, images.test(), "int8")
        agreement, count = facts["top1_agreement"], facts["agreement_images"]
        if agreement < min_int8_agreement:
            raise UserError(
                f"The int8 file picks the float model's class on only {agreement:.1%} of {count} test "
                f"images ({images.source}), below the {min_int8_agreement:.0%} needed; it was not kept and "
                "nothing was added to the zoo. Try more --calibration-images, or export litert-fp16."
            )
        return facts
    difference, count = 0.0, 0
    for pixels in images.validation():
        expected = keras_probabilities(model, pixels)
        got = runtime(pixels)
        difference = max(difference, float(np.max(np.abs(got - expected), initial=0.0)))
        count += len(pixels)
        tolerance = FORMATS[name].tolerance
        if difference > tolerance or np.any(got.argmax(-1) != expected.argmax(-1)):
            raise RuntimeError(
                f"The {name} file disagrees with the Keras model on {images.source} (max probability "
                f"difference {difference:.2e}, allowed {tolerance:.0e}, top-1 must match); it was not kept."
            )
    facts = {"max_abs_diff": float(f"{difference:.3g}"), "checked_images": count}
    if name == "openvino":
        facts.update(choose_precision(model, folder, images, precision))
    return facts


def choose_precision(model: keras.Model, folder: Path, images: CheckImages, precision: str) -> dict:
    """What the OpenVINO file of ``folder`` serves in, recorded in the file and returned as facts.

    ``auto``: bfloat16 where this CPU computes it natively and the file's bfloat16 top-1 matches
    the float32 Keras model's on at least ``MIN_BFLOAT16_AGREEMENT`` of the test images; float32
    otherwise. ``float32`` and ``bfloat16`` are kept as asked (bfloat16 still measured). Only
    bfloat16 is marked: a file without the mark serves float32.
    """
    from kerasimg.serving.runtimes import check_precision, cpu_serves_bfloat16, mark_chosen_precision

    check_precision("openvino", precision)
    if precision == "float32" or (precision == "auto" and not cpu_serves_bfloat16()):
        return {"serves": "float32"}
    # Asked for bfloat16 on a CPU without it, the runtime refuses here, saying why.
    facts = agreement_facts(model, load_runtime(folder, "openvino", "bfloat16"), images.test(), "bfloat16")
    chosen = precision
    if precision == "auto":
        chosen = "bfloat16" if facts["top1_agreement"] >= MIN_BFLOAT16_AGREEMENT else "float32"
    if chosen == "bfloat16":
        mark_chosen_precision(format_path(folder, "openvino"), chosen)
    return {"serves": chosen, "bfloat16": facts}


def keras_probabilities(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(pixels, training=False)).astype("float32")


def agreement_facts(model: keras.Model, runtime, batches: Iterable[tuple], kind: str) -> dict:
    """Top-1 agreement of a ``kind`` file (int8, bfloat16) with the float model and, where labels are
    known, both models' accuracy: a model that answers one class agrees everywhere, and only the
    accuracy shows it."""
    same = count = 0
    right = {"file": 0, "float": 0}
    labelled = True
    for pixels, labels in batches:
        got, expected = runtime(pixels).argmax(-1), keras_probabilities(model, pixels).argmax(-1)
        same += int(np.sum(got == expected))
        count += len(pixels)
        labelled = labelled and labels is not None
        if labelled:
            right["file"] += int(np.sum(got == np.asarray(labels)))
            right["float"] += int(np.sum(expected == np.asarray(labels)))
    if not count:
        raise UserError(f"No test images to measure the {kind} file's top-1 agreement on.")
    facts = {"top1_agreement": round(same / count, 4), "agreement_images": count}
    if labelled:
        facts.update(
            {
                f"{kind}_accuracy": round(right["file"] / count, 4),
                "float_accuracy": round(right["float"] / count, 4),
            }
        )
    return facts


def add_formats(
    model: keras.Model,
    folder: Path,
    names: Iterable[str],
    images: CheckImages,
    min_int8_agreement: float = MIN_INT8_AGREEMENT,
    served: keras.Model | None = None,
    precision: str = "auto",
) -> dict:
    """Convert and verify each non-SavedModel format into ``folder``; returns ``{format: facts}``.

    ``served`` (the same function as ``model``, e.g. BatchNorm folded) is what is converted;
    every file is checked against ``model``. ``precision``: what the OpenVINO file serves in.
    """
    facts = {}
    for name in names:
        path = format_path(folder, name)
        convert(served or model, name, path, images.calibration)
        checked = verify(model, name, folder, images, min_int8_agreement, precision)
        facts[name] = {"file": path.name, "bytes": FORMATS[name].bytes(folder), **checked}
    return facts
