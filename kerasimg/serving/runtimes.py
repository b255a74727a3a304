"""Run an exported file in its own runtime: pixels in, probabilities out, whatever the format.

``load_runtime(version_folder, format)`` gives one callable for every format, so
export verification, ``predict --format`` and ``bench --format`` share it: the
SavedModel through plain TensorFlow (its ``predict_images`` signature), ONNX
through onnxruntime, LiteRT through ``ai_edge_litert``'s interpreter, OpenVINO's IR
through its CPU plugin. Each takes
``[N, size, size, 3]`` float32 pixels in 0-255 and returns ``[N, classes]``
float32 probabilities; the int8 file's uint8 input is quantised here with the
file's own scale and zero point.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from kerasimg.errors import UserError
from kerasimg.serving.formats import (
    FORMATS,
    LABELS_FILE,
    SAVEDMODEL,
    SERVING_PRECISIONS,
    check_installed,
    read_labels_file,
)


class Runtime:
    """``runtime(pixels) -> probabilities``; ``image_size`` is the side the file expects."""

    image_size: int

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SavedModelRuntime(Runtime):
    """TensorFlow running the ``predict_images`` signature, in the precision its export chose."""

    def __init__(self, folder: Path, precision: str = "auto"):
        import tensorflow as tf

        from kerasimg.serving.bfloat16 import check_savedmodel_precision
        from kerasimg.serving.signatures import PIXELS_INPUT

        self.precision = check_savedmodel_precision(folder, precision)
        self._input = PIXELS_INPUT
        self._serve = tf.saved_model.load(str(folder)).signatures["predict_images"]
        self.image_size = int(self._serve.structured_input_signature[1][PIXELS_INPUT].shape[1])

    def __call__(self, pixels):
        return self._serve(**{self._input: np.asarray(pixels, np.float32)})["probabilities"].numpy()


class OnnxRuntime(Runtime):
    def __init__(self, path: Path):
        import onnxruntime

        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0]
        self.image_size = int(self._input.shape[1])

    def __call__(self, pixels):
        return self._session.run(None, {self._input.name: np.asarray(pixels, np.float32)})[0]


class LiteRTRuntime(Runtime):
    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.image_size = int(self._input["shape_signature"][1])
        self._batch = None

    def __call__(self, pixels):
        pixels = np.asarray(pixels, np.float32)
        if self._batch != len(pixels):
            self._interpreter.resize_tensor_input(self._input["index"], [len(pixels), *pixels.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = len(pixels)
        self._interpreter.set_tensor(self._input["index"], _quantise(pixels, self._input))
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output["index"])
        if self._output["dtype"] != np.float32:
            scale, zero_point = self._output["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        return out


class OpenVINORuntime(Runtime):
    """OpenVINO's CPU plugin, computing in ``precision`` (``auto``: what the export chose for this file).

    The precision is always set: on a CPU with bfloat16 (AVX512-BF16, AMX) the plugin would
    otherwise choose bfloat16 by itself, unchecked.
    """

    def __init__(self, path: Path, precision: str = "float32"):
        import openvino

        core = openvino.Core()
        model = core.read_model(str(path))
        if precision == "auto":
            precision = chosen_precision(model) if cpu_serves_bfloat16() else "float32"
        elif precision == "bfloat16" and not cpu_serves_bfloat16():
            raise UserError(
                "This CPU has no bfloat16 support (OpenVINO's CPU plugin does not list BF16), so the "
                "openvino file cannot serve in bfloat16 here; use --precision float32 or auto."
            )
        self.precision = precision
        self.image_size = int(model.inputs[0].get_partial_shape()[1].get_length())
        hint = {"float32": "f32", "bfloat16": "bf16"}[precision]
        self._compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    def __call__(self, pixels):
        return self._compiled(np.asarray(pixels, np.float32))[0]


# The formats that can compute in bfloat16: the SavedModel in the graph its export wrote, OpenVINO's
# IR in either precision (its CPU plugin's hint).
BFLOAT16_FORMATS = (SAVEDMODEL, "openvino")

# Where an OpenVINO file records the precision its export chose for ``auto`` (the IR's own metadata).
CHOSEN_PRECISION = ["kerasimg", "serves"]


@functools.cache
def cpu_serves_bfloat16() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively on this machine."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def chosen_precision(model) -> str:
    """The precision an OpenVINO model's export chose (float32 for a file without the mark)."""
    return (
        model.get_rt_info(CHOSEN_PRECISION).astype(str) if model.has_rt_info(CHOSEN_PRECISION) else "float32"
    )


def mark_chosen_precision(path: Path, precision: str) -> None:
    """Record ``precision`` in the OpenVINO file at ``path`` (its .xml and .bin are rewritten)."""

    def mark(model):
        model.set_rt_info(precision, CHOSEN_PRECISION)
        return model

    rewrite_openvino(path, mark)


def rewrite_openvino(path: Path, change) -> None:
    """Replace the OpenVINO file at ``path`` with ``change(model)``: written beside it, then swapped in
    (reading maps the weights, so they cannot be overwritten in place)."""
    import openvino

    path = Path(path)
    model = change(openvino.Core().read_model(str(path)))
    staged = path.with_name(f".{path.stem}-rewritten.xml")
    openvino.save_model(model, str(staged), compress_to_fp16=False)
    del model
    os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(staged, path)


def check_precision(name: str, precision: str) -> None:
    """Refuse a serving precision a format cannot compute in: one line naming the remedy."""
    if precision not in SERVING_PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(SERVING_PRECISIONS)}. Received: {precision!r}")
    if precision == "bfloat16" and name not in BFLOAT16_FORMATS:
        raise UserError(
            f"--precision bfloat16 is served by the {' and '.join(BFLOAT16_FORMATS)} formats only "
            f"(received --format {name}); export with `python -m kerasimg.export RUN_DIR --format "
            "openvino --precision bfloat16` and predict with --format savedmodel or openvino."
        )


def _quantise(pixels: np.ndarray, detail: dict) -> np.ndarray:
    """Float pixels into the input's type (the int8 file's uint8 input has its own scale and zero point)."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return pixels
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.round(pixels / scale + zero_point), limits.min, limits.max).astype(dtype)


def format_path(folder: Path, name: str) -> Path:
    """The file of format ``name`` in a version folder (the folder itself for the SavedModel)."""
    filename = FORMATS[name].filename
    return Path(folder) if filename is None else Path(folder) / filename


def load_runtime(folder: str | os.PathLike, name: str = SAVEDMODEL, precision: str = "auto") -> Runtime:
    """The format ``name`` of the version folder ``folder``, ready to run in ``precision`` (``auto``:
    what its export chose). The SavedModel computes in the one precision its export gave its graph;
    the openvino file in either; the others in float32."""
    if name not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}. Received: format={name!r}")
    check_precision(name, precision)
    check_installed([name])
    path = format_path(Path(folder), name)
    if not path.exists():
        present = [n for n in FORMATS if format_path(Path(folder), n).exists()]
        raise UserError(
            f"{folder} has no {name} export (it has {', '.join(present)}); export the run again with "
            f"`python -m kerasimg.export RUN_DIR --format {name}`."
        )
    if name == SAVEDMODEL:
        return SavedModelRuntime(path, precision)
    if name == "onnx":
        return OnnxRuntime(path)
    if name == "openvino":
        return OpenVINORuntime(path, precision)
    return LiteRTRuntime(path)


def read_labels(folder: str | os.PathLike) -> list[str]:
    """The class names written beside the files (``labels.txt``)."""
    return read_labels_file(Path(folder, LABELS_FILE))
