"""Batched prediction to a CSV, the ``seg_pred/`` use case: thousands of unlabelled files, one table.

Files go through the exported ``serving_default`` signature ``batch_size`` at a time,
as raw bytes (the graph decodes them, as TF Serving would). The graph refuses a
batch that holds an unreadable file; only then is each file of that batch checked
(``check_image``, the check training uses), the bad ones named with their reason and
the rest predicted in one call, so a bad file never costs its neighbours their
predictions and good batches pay no second decode.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.errors import ArgumentError
from kerasimg.files import write_text
from kerasimg.tables import csv_writer


def predict_files_batched(
    model_dir: Path,
    files: list[Path],
    top_k: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 32,
    precision: str = "auto",
) -> list[dict]:
    """Like ``predict_files`` (one result per file, in order), ``batch_size`` files per call.

    A multi-label model's results also hold ``predicted``: the classes at or above their thresholds.
    """
    import tensorflow as tf

    from kerasimg.serving.bfloat16 import check_savedmodel_precision
    from kerasimg.serving.runtimes import read_labels

    if batch_size < 1:
        raise ArgumentError("batch_size", "must be at least 1", batch_size)
    check_savedmodel_precision(model_dir, precision)
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    names = read_labels(model_dir) if "predicted" in serve.structured_outputs else None
    results: list[dict] = []
    for start in range(0, len(files), batch_size):
        results += _predict_batch(serve, files[start : start + batch_size], top_k, max_pixels, names)
    return results


def _predict_batch(serve, paths: list[Path], top_k: int, max_pixels: int, names=None) -> list[dict]:
    import tensorflow as tf

    from kerasimg.data.verify import check_image

    results: list[dict] = [{"file": str(p)} for p in paths]
    contents: dict[int, bytes] = {}
    for i, path in enumerate(paths):
        try:
            contents[i] = path.read_bytes()
        except OSError as error:
            results[i]["error"] = f"cannot read file ({error.strerror})"
    try:
        _fill(results, list(contents), serve(image_bytes=tf.constant(list(contents.values()))), top_k, names)
    except tf.errors.InvalidArgumentError:
        good = []
        for i in contents:
            reason = check_image(str(paths[i]), max_pixels)
            if reason:
                results[i]["error"] = reason
            else:
                good.append(i)
        if good:
            _fill(results, good, serve(image_bytes=tf.constant([contents[i] for i in good])), top_k, names)
    return results


def _fill(results: list[dict], indices: list[int], out: dict, top_k: int, names=None) -> None:
    classes, scores = out["top_k_classes"].numpy(), out["top_k_scores"].numpy()
    predicted = out["predicted"].numpy() if names is not None else None
    for row, i in enumerate(indices):
        top = [n.decode() for n in classes[row][:top_k]]
        results[i]["top"] = list(zip(top, (float(s) for s in scores[row][:top_k])))
        if predicted is not None:
            results[i]["predicted"] = [name for name, kept in zip(names, predicted[row]) if kept]


def write_csv(results: list[dict], path: str | os.PathLike, top_k: int) -> Path:
    """``file,class,score,class_2,score_2,...,error``: one row per file, an unreadable one with its reason.

    A multi-label model's table has ``predicted`` (its classes above their thresholds, ``a;b``) first.
    """
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    multilabel = any("predicted" in r for r in results)
    ranks = [("class", "score")] + [(f"class_{k}", f"score_{k}") for k in range(2, top_k + 1)]
    writer.writerow(
        ["file", *(["predicted"] if multilabel else []), *(name for pair in ranks for name in pair), "error"]
    )
    for r in results:
        top = r.get("top", [])
        cells = [";".join(r.get("predicted", []))] if multilabel else []
        for k in range(top_k):
            cells += [top[k][0], f"{top[k][1]:.6f}"] if k < len(top) else ["", ""]
        writer.writerow([r["file"], *cells, r.get("error", "")])
    return write_text(path, buffer.getvalue())
