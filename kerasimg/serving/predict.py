"""Predict with an exported SavedModel: plain TensorFlow, no kerasimg model code, as TF Serving would.

Each file's bytes go through the ``serving_default`` signature. Unreadable files are
reported by name with the reason; the rest are still predicted.
"""

from __future__ import annotations

from pathlib import Path

from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.errors import UserError
from kerasimg.serving.formats import SAVEDMODEL
from kerasimg.serving.zoo import DEFAULT_ZOO, Zoo


def resolve_model_dir(path: str, zoo: str | Path | None = None) -> Path:
    """A SavedModel folder, a model folder (its newest integer version), or ``NAME[/VERSION]`` in ``zoo``.

    A zoo that is named explicitly wins over a same-named folder in the working directory;
    without one, a folder wins over ``saved_models/NAME``.
    """
    if zoo is not None and _names_a_zoo_model(path):
        return Zoo(zoo).resolve(path)
    zoo = DEFAULT_ZOO if zoo is None else zoo
    folder = Path(path)
    if (folder / "saved_model.pb").exists():
        return folder
    if not folder.exists():
        return Zoo(zoo).resolve(path)
    versions = sorted(
        (int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit()), reverse=True
    )
    if not versions:
        raise UserError(f"No SavedModel at {folder} (expected saved_model.pb or integer version folders).")
    return folder / str(versions[0])


def _names_a_zoo_model(path: str) -> bool:
    try:
        Zoo.parse_target(path)
    except UserError:
        return False
    return True


def list_images(targets: list[str]) -> list[Path]:
    from kerasimg.data.sources import is_hidden

    files = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not is_hidden(p.name))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"No such file or folder: {target}")
    return files


def predict_files(
    model_dir: Path,
    files: list[Path],
    top_k: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    format: str = SAVEDMODEL,
    precision: str = "auto",
) -> list[dict]:
    """One result per file: ``{file, top: [(class, score)...]}`` or ``{file, error}``.

    ``format`` other than the SavedModel runs that file of the version in its own runtime
    (``kerasimg.serving.runtimes``), each image decoded and resized as the SavedModel would.
    """
    from kerasimg.data.verify import check_image

    top_of = (
        _savedmodel_top(model_dir, precision)
        if format == SAVEDMODEL
        else _runtime_top(model_dir, format, max_pixels, precision)
    )
    results = []
    for path in files:
        # The same check training uses, so a bad file gets its reason instead of a graph error.
        reason = check_image(str(path), max_pixels)
        if reason:
            results.append({"file": str(path), "error": reason})
        else:
            results.append({"file": str(path), "top": top_of(path)[:top_k]})
    return results


def _savedmodel_top(model_dir: Path, precision: str = "auto"):
    """``path -> [(class, score)...]`` through ``serving_default``, best first."""
    import tensorflow as tf

    from kerasimg.serving.bfloat16 import check_savedmodel_precision

    check_savedmodel_precision(model_dir, precision)
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

    def top_of(path: Path) -> list[tuple[str, float]]:
        out = serve(image_bytes=tf.constant([path.read_bytes()]))
        names = [n.decode() for n in out["top_k_classes"].numpy()[0]]
        return list(zip(names, (float(s) for s in out["top_k_scores"].numpy()[0])))

    return top_of


def _runtime_top(model_dir: Path, format: str, max_pixels: int, precision: str = "auto"):
    """``path -> [(class, score)...]`` through the ``format`` file of the version, best first."""
    import numpy as np
    import tensorflow as tf

    from kerasimg.data.decode import decode_rgb
    from kerasimg.data.pipeline import resize
    from kerasimg.serving.runtimes import load_runtime, read_labels

    runtime = load_runtime(model_dir, format, precision)
    labels = read_labels(model_dir)

    def top_of(path: Path) -> list[tuple[str, float]]:
        pixels = resize(decode_rgb(tf.constant(path.read_bytes()), max_pixels), runtime.image_size)
        probabilities = runtime(pixels.numpy()[None])[0]
        return [(labels[i], float(probabilities[i])) for i in np.argsort(-probabilities, kind="stable")]

    return top_of
