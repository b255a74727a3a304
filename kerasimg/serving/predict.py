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


def resolve_model_dir(path: str, zoo: str | Path = DEFAULT_ZOO) -> Path:
    """A SavedModel folder, a model folder (its newest integer version), or ``NAME[/VERSION]`` in ``zoo``."""
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
) -> list[dict]:
    """One result per file: ``{file, top: [(class, score)...]}`` or ``{file, error}``.

    ``format`` other than the SavedModel runs that file of the version (``kerasimg.serving.runtimes``).
    """
    import tensorflow as tf

    from kerasimg.data.verify import check_image

    if format != SAVEDMODEL:
        from kerasimg.serving.runtimes import predict_files_in_format

        return predict_files_in_format(model_dir, format, files, top_k, max_pixels)

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    results = []
    for path in files:
        # The same check training uses, so a bad file gets its reason instead of a graph error.
        reason = check_image(str(path), max_pixels)
        if reason:
            results.append({"file": str(path), "error": reason})
            continue
        out = serve(image_bytes=tf.constant([path.read_bytes()]))
        names = [n.decode() for n in out["top_k_classes"].numpy()[0][:top_k]]
        scores = [float(s) for s in out["top_k_scores"].numpy()[0][:top_k]]
        results.append({"file": str(path), "top": list(zip(names, scores))})
    return results
