"""Batched prediction to a CSV, the ``seg_pred/`` use case: thousands of unlabelled files, one table.

Files are read and decoded by a ``tf.data`` pipeline, several at a time on every core and
ahead of the model, with the exported model's own decoding (``decode_rgb`` and ``resize``,
what its ``serving_default`` signature runs), and the decoded batches go through its
``predict_images`` signature: the same numbers as sending the bytes, without decoding one
file after another inside the graph while the cores wait. A file that cannot be read or
decoded is flagged in the pipeline, then checked (``check_image``, the check training uses)
and named with its reason; it never costs its neighbours their predictions.
``decode="graph"`` sends each batch's bytes to ``serving_default`` instead, as TF Serving
would (``python -m kerasimg.benchmarks.predict_speed`` times both).
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
    decode: str = "parallel",
) -> list[dict]:
    """Like ``predict_files`` (one result per file, in order), ``batch_size`` files per call."""
    import tensorflow as tf

    if batch_size < 1:
        raise ArgumentError("batch_size", "must be at least 1", batch_size)
    if decode not in DECODE:
        raise ArgumentError("decode", f"must be one of {', '.join(DECODE)}", decode)
    loaded = tf.saved_model.load(str(model_dir))
    if decode == "graph":
        serve = loaded.signatures["serving_default"]
        results: list[dict] = []
        for start in range(0, len(files), batch_size):
            results += _predict_batch(serve, files[start : start + batch_size], top_k, max_pixels)
        return results
    return _predict_decoded(loaded.signatures["predict_images"], files, top_k, max_pixels, batch_size)


# Where a batch's files are decoded: in a parallel input pipeline, or in the serving graph, one by one.
DECODE = ("parallel", "graph")


def _decoded_batches(files: list[Path], image_size: int, max_pixels: int, batch_size: int):
    """``(index, pixels, ok)`` batches in file order; ``ok`` is false for a file that failed to decode."""
    import tensorflow as tf

    from kerasimg.data.decode import decode_rgb
    from kerasimg.data.pipeline import resize

    def attempt(index, path):
        decoded = tf.data.Dataset.from_tensors((index, path)).map(
            lambda i, p: (i, resize(decode_rgb(tf.io.read_file(p), max_pixels), image_size), True)
        )
        failed = (index, tf.zeros([image_size, image_size, 3]), False)
        return decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(failed)).take(1)

    paths = tf.data.Dataset.from_tensor_slices((tf.range(len(files)), [str(f) for f in files]))
    ds = paths.interleave(attempt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(2)


def _predict_decoded(serve, files: list[Path], top_k: int, max_pixels: int, batch_size: int) -> list[dict]:
    import tensorflow as tf

    from kerasimg.data.verify import check_image
    from kerasimg.serving.signatures import PIXELS_INPUT

    results: list[dict] = [{"file": str(p)} for p in files]
    if not files:
        return results
    image_size = int(serve.structured_input_signature[1][PIXELS_INPUT].shape[1])
    for index, pixels, ok in _decoded_batches(files, image_size, max_pixels, batch_size):
        index, ok = index.numpy(), ok.numpy()
        for i in index[~ok]:
            results[i]["error"] = check_image(str(files[i]), max_pixels) or "not a readable image"
        if ok.any():
            good = tf.boolean_mask(pixels, ok) if not ok.all() else pixels
            _fill(results, list(index[ok]), serve(**{PIXELS_INPUT: good}), top_k)
    return results


def _predict_batch(serve, paths: list[Path], top_k: int, max_pixels: int) -> list[dict]:
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
        _fill(results, list(contents), serve(image_bytes=tf.constant(list(contents.values()))), top_k)
    except tf.errors.InvalidArgumentError:
        good = []
        for i in contents:
            reason = check_image(str(paths[i]), max_pixels)
            if reason:
                results[i]["error"] = reason
            else:
                good.append(i)
        if good:
            _fill(results, good, serve(image_bytes=tf.constant([contents[i] for i in good])), top_k)
    return results


def _fill(results: list[dict], indices: list[int], out: dict, top_k: int) -> None:
    classes, scores = out["top_k_classes"].numpy(), out["top_k_scores"].numpy()
    for row, i in enumerate(indices):
        names = [n.decode() for n in classes[row][:top_k]]
        results[i]["top"] = list(zip(names, (float(s) for s in scores[row][:top_k])))


def write_csv(results: list[dict], path: str | os.PathLike, top_k: int) -> Path:
    """``file,class,score,class_2,score_2,...,error``: one row per file, an unreadable one with its reason."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    ranks = [("class", "score")] + [(f"class_{k}", f"score_{k}") for k in range(2, top_k + 1)]
    writer.writerow(["file", *(name for pair in ranks for name in pair), "error"])
    for r in results:
        top = r.get("top", [])
        cells = []
        for k in range(top_k):
            cells += [top[k][0], f"{top[k][1]:.6f}"] if k < len(top) else ["", ""]
        writer.writerow([r["file"], *cells, r.get("error", "")])
    return write_text(path, buffer.getvalue())
