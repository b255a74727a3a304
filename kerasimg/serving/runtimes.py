"""Run an exported file in its own runtime: pixels in, probabilities out, whatever the format.

``load_runtime(version_folder, format)`` gives one callable for every format, so
export verification, ``predict --format`` and ``bench --format`` share it: the
SavedModel through plain TensorFlow (its ``predict_images`` signature), ONNX
through onnxruntime, LiteRT through ``ai_edge_litert``'s interpreter. Each takes
``[N, size, size, 3]`` float32 pixels in 0-255 and returns ``[N, classes]``
float32 probabilities; the int8 file's uint8 input is quantised here with the
file's own scale and zero point.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerasimg.errors import UserError
from kerasimg.serving.formats import FORMATS, LABELS_FILE, SAVEDMODEL, check_installed, read_labels_file


class Runtime:
    """``runtime(pixels) -> probabilities``; ``image_size`` is the side the file expects."""

    image_size: int

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SavedModelRuntime(Runtime):
    def __init__(self, folder: Path):
        import tensorflow as tf

        from kerasimg.serving.signatures import PIXELS_INPUT

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


def load_runtime(folder: str | os.PathLike, name: str = SAVEDMODEL) -> Runtime:
    """The format ``name`` of the version folder ``folder``, ready to run."""
    if name not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}. Received: format={name!r}")
    check_installed([name])
    path = format_path(Path(folder), name)
    if not path.exists():
        present = [n for n in FORMATS if format_path(Path(folder), n).exists()]
        raise UserError(
            f"{folder} has no {name} export (it has {', '.join(present)}); export the run again with "
            f"`python -m kerasimg.export RUN_DIR --format {name}`."
        )
    if name == SAVEDMODEL:
        return SavedModelRuntime(path)
    if name == "onnx":
        return OnnxRuntime(path)
    return LiteRTRuntime(path)


def read_labels(folder: str | os.PathLike) -> list[str]:
    """The class names written beside the files (``labels.txt``)."""
    return read_labels_file(Path(folder, LABELS_FILE))
