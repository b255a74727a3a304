"""Grad-CAM overlays for image files, from a run directory or a zoo model's run.

A SavedModel keeps no path from the class score back to the feature map that
Keras code can differentiate, so a zoo model is explained through the run it was
exported from (the zoo index records it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerasimg.data import load_image
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.data.verify import check_image
from kerasimg.diagnose.gradcam import grad_cam
from kerasimg.diagnose.plots import plot_mistakes
from kerasimg.errors import UserError
from kerasimg.models import load_classifier
from kerasimg.serving.zoo import DEFAULT_ZOO, Zoo
from kerasimg.training.run import Run

BATCH = 16


def run_of(target: str | os.PathLike, zoo: str | os.PathLike = DEFAULT_ZOO) -> Run:
    """The run directory ``target``, or the run a zoo model (``NAME[/VERSION]`` or its folder) came from."""
    from kerasimg.serving.predict import resolve_model_dir

    run = Run(target)
    if run.exists:
        return run
    try:
        version_dir = resolve_model_dir(str(target), zoo).resolve()
    except UserError:
        raise UserError(
            f"No run directory or zoo model {str(target)!r}: pass the folder a `fit --out` wrote, or a "
            f"model of the zoo {zoo} (NAME[/VERSION])."
        ) from None
    entries = Zoo(version_dir.parent.parent).entries()
    entry = next((e for e in entries if Path(e.get("path", "")).resolve() == version_dir), None)
    source = Run(entry["run"]) if entry and entry.get("run") else None
    if source is None or not source.has_model:
        raise UserError(
            f"Grad-CAM needs the Keras model of the run that {version_dir} was exported from, and "
            f"{'the zoo does not record one' if source is None else f'{source.path} holds no model.keras'}; "
            "pass a run directory instead."
        )
    return source


def explain_images(
    target: str | os.PathLike,
    images: list[str | os.PathLike],
    *,
    class_name: str | None = None,
    out: str | os.PathLike | None = None,
    zoo: str | os.PathLike = DEFAULT_ZOO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict]:
    """Write ``<out>/<image stem>.gradcam.png`` per image and return one result per file.

    A result is ``{file, predicted, probability, explained, overlay, peak}`` (``peak``:
    the map's hottest point as row/column fractions), or ``{file, error}``.

    ``class_name`` is the class every map explains (default: each image's predicted
    class). ``out`` defaults to ``explain/`` in the run directory. Unreadable files
    do not stop the rest.
    """
    from kerasimg.serving.predict import list_images

    run = run_of(target, zoo)
    model_path = run.require_model()
    config = run.read_config()
    names, backbone = config["class_names"], config["arguments"]["backbone"]
    size = int(config["resolved"]["image_size"])
    if class_name is not None and class_name not in names:
        raise UserError(f"--class must be one of the run's classes {names}. Received: --class {class_name}")
    files = list_images([str(i) for i in images])
    folder = Path(out) if out is not None else run.explain_dir
    folder.mkdir(parents=True, exist_ok=True)
    model = load_classifier(model_path, names)
    results, readable = [], []
    for path in files:
        reason = check_image(str(path), max_pixels)
        results.append({"file": str(path), "error": reason} if reason else {"file": str(path)})
        if not reason:
            readable.append(len(results) - 1)
    used: set[str] = set()
    for start in range(0, len(readable), BATCH):
        batch = readable[start : start + BATCH]
        pixels = np.stack([load_image(results[i]["file"], size).numpy() for i in batch])
        chosen = None if class_name is None else np.full(len(batch), names.index(class_name))
        maps, probabilities = grad_cam(model, pixels, backbone, chosen)
        for row, i in enumerate(batch):
            result = results[i]
            guess = int(probabilities[row].argmax())
            explained = class_name or names[guess]
            overlay = folder / _unique(Path(result["file"]).stem, used)
            caption = (
                f"{Path(result['file']).name}\npredicted {names[guess]} ({probabilities[row, guess]:.0%})\n"
                f"Grad-CAM for {explained}"
            )
            plot_mistakes(pixels[row : row + 1], [caption], overlay, heatmaps=maps[row : row + 1])
            result.update(
                predicted=names[guess],
                probability=float(probabilities[row, guess]),
                explained=explained,
                overlay=str(overlay),
                peak=_peak(maps[row]),
            )
    return results


def _unique(stem: str, used: set[str]) -> str:
    name, n = f"{stem}.gradcam.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.gradcam.png"
    used.add(name)
    return name


def _peak(heatmap: np.ndarray) -> tuple[float, float]:
    """Where the map is hottest, as ``(row, column)`` fractions of the image (0 top/left, 1 bottom/right)."""
    rows, columns = heatmap.shape
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return ((r + 0.5) / rows, (c + 0.5) / columns)
