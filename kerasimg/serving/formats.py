"""The export formats: their names, their files in a zoo version folder, and the packages they need.

A version folder is a TF Serving SavedModel (``saved_model.pb``, ``variables/``,
``assets/``, ``assets.extra/``); the other formats are files beside it (one each, and
OpenVINO's weights beside its graph), with
``labels.txt`` (one class name a line), which TF Serving and ``saved_model_cli``
ignore. Every format takes raw 0-255 RGB pixels at the model's size: the
backbone's preprocessing layer is inside each file. ``litert-int8`` takes uint8
pixels and returns float probabilities.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import ArgumentError, UserError

SAVEDMODEL = "savedmodel"
LABELS_FILE = "labels.txt"
# An int8 file is kept when its top-1 matches the float model's on this share of the test split.
MIN_INT8_AGREEMENT = 0.98
# ...measured on at least this many images (or the whole test split, when smaller): on four images a
# model that always answers one class agrees 100%.
MIN_INT8_CHECK_IMAGES = 100
DEFAULT_CALIBRATION_IMAGES = 200
# What the OpenVINO file computes in: ``auto`` serves bfloat16 where the CPU has it and its top-1
# matches float32's on at least MIN_BFLOAT16_AGREEMENT of the check images (decided at export).
SERVING_PRECISIONS = ("auto", "float32", "bfloat16")
MIN_BFLOAT16_AGREEMENT = 0.995


@dataclass(frozen=True)
class ExportFormat:
    """One format: where it is written and what it needs.

    Attributes:
        name: The ``--format`` value.
        filename: Its file inside the version folder (``None``: the SavedModel is the folder).
        extra: The ``pip install kerasimg[EXTRA]`` that brings ``modules``.
        modules: Python modules needed to convert to it and run it.
        tolerance: Largest |probability difference| from the Keras model on the
            validation images; ``None`` for int8, judged by top-1 agreement instead.
        companions: Files written beside ``filename`` that it needs (OpenVINO's weights).
    """

    name: str
    filename: str | None
    extra: str | None
    modules: tuple[str, ...]
    tolerance: float | None
    companions: tuple[str, ...] = ()

    def files(self, folder: Path) -> list[Path]:
        """The format's files in a version folder (none for the SavedModel, which is the folder)."""
        return [Path(folder) / n for n in (self.filename, *self.companions) if self.filename]

    def bytes(self, folder: Path) -> int:
        return sum(f.stat().st_size for f in self.files(folder))


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(SAVEDMODEL, None, None, (), 1e-4),
        ExportFormat("onnx", "model.onnx", "onnx", ("tf2onnx", "onnx", "onnxruntime"), 1e-4),
        ExportFormat("litert", "model.tflite", "litert", ("ai_edge_litert",), 1e-4),
        ExportFormat("litert-fp16", "model_fp16.tflite", "litert", ("ai_edge_litert",), 1e-2),
        ExportFormat("litert-int8", "model_int8.tflite", "litert", ("ai_edge_litert",), None),
        # The IR's graph (.xml) and its weights (.bin); the runtime computes in float32 (see runtimes).
        ExportFormat("openvino", "model.xml", "openvino", ("openvino",), 1e-4, companions=("model.bin",)),
    )
}


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,litert-int8"`` (or a list) -> ``("savedmodel", "onnx", "litert-int8")``.

    The SavedModel always comes first: it is the version folder that TF Serving,
    ``models.config`` and the zoo read; the others are added beside it.
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ArgumentError("format", f"must be a comma-separated list of {', '.join(FORMATS)}", value)
    return (SAVEDMODEL, *dict.fromkeys(n for n in names if n != SAVEDMODEL))


def check_installed(formats: Sequence[str]) -> None:
    """Refuse, before any work, a format whose packages are missing: one sentence naming the extra."""
    for name in formats:
        fmt = FORMATS[name]
        missing = [m for m in fmt.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(
                f"The {name} format needs {', '.join(missing)}, which is not installed: "
                f"pip install 'kerasimg[{fmt.extra}]' (or 'kerasimg[export]' for every format)."
            )


def describe(formats: dict) -> str:
    """A zoo entry's ``formats`` as one cell: ``savedmodel 4.7 MB, litert-int8 1.2 MB (99.3% top-1)``."""
    cells = []
    for name, facts in formats.items():
        cell = f"{name} {facts['bytes'] / 1e6:.1f} MB"
        if "top1_agreement" in facts:
            cell += f" ({facts['top1_agreement']:.1%} top-1)"
        if facts.get("serves") == "bfloat16":
            cell += f" (bfloat16, {facts['bfloat16']['top1_agreement']:.1%} top-1)"
        cells.append(cell)
    return ", ".join(cells)


def write_labels(path: Path, class_names: list[str]) -> None:
    """A labels file: one class name a line, ``\\n`` after each (``read_labels`` reads it back exactly)."""
    Path(path).write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8", newline="\n")


def read_labels_file(path: Path) -> list[str]:
    """The names ``write_labels`` wrote: split on ``\\n`` only, since ``str.splitlines`` also splits
    on characters a name may hold (U+2028, U+0085, ...)."""
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
