"""Cached views of the training split: computed once, one view per image drawn each epoch.

A phase whose lower layers are frozen otherwise recomputes the same function of
every image every epoch. Two caches share this storage (``kerasimg.training``):
the pooled backbone features while the whole backbone is frozen (an epoch is then
a few matrix multiplications), and the activations at a stage boundary while only
the top stages train (``boundary_cache``). Both follow one views-per-epoch rule:
with no augmentation one plain view; with ``flip`` the plain and the mirrored view,
exactly what image training sees; with heavier augmentation ``--cache-views K``
augmented views. Each epoch draws one view per image at random.

Arrays are ``[N, views, ...]`` ``.npy`` files in the compute dtype (bfloat16 as its
uint16 bits, since ``.npy`` does not round-trip it), written as they are computed
so extraction never holds them in RAM; a cache larger than ``RAM_LIMIT_BYTES`` is
read from disk (``np.load(mmap_mode="r")``) batch by batch while training.

A cache is trusted only as far as it can be checked: its ``.json`` (written last) records
each array's shape, dtype, byte size and checksum, and a reused cache that no longer
matches, or holds non-finite values, is extracted again with one line saying why.
Temporary files left by a killed run are removed first (the run lock guarantees no other
process is writing into the run's cache folder).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasimg.data import image_dataset
from kerasimg.data.augment import FLIP_VIEWS, PLAIN_VIEW, Augmenter, parse_augment
from kerasimg.data.splits import FileSplit
from kerasimg.files import atomic_write, write_json
from kerasimg.models.classifier import FEATURES_LAYER
from kerasimg.progress import progress_bar

# Caches up to this size are loaded into RAM; larger ones stream from disk. 1 GiB holds the
# pooled features of millions of images, or the 14x14x1024 ResNet-50 conv4 activations of
# 1,300 images (float32) or 2,600 (bfloat16), per view.
RAM_LIMIT_BYTES = 1 << 30
# Files up to this size are checksummed whole; larger ones by evenly spaced blocks.
_FULL_CHECKSUM_BYTES = 256 << 20
_SAMPLED_BLOCKS, _BLOCK_BYTES = 64, 1 << 20
# The temporary names ``atomic_write`` gives a cache's files: ``.train-<hash>.npy.XXXX.npy``.
_LEFTOVER = re.compile(r"^\..+\.(npy|json)\.[^.]+\.(npy|json)$")


def split_classifier(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(extractor, head)``: images -> features, and features -> probabilities.

    The head reuses the classifier's layers after ``FEATURES_LAYER``, so training it
    trains the classifier.
    """
    pool = model.get_layer(FEATURES_LAYER)
    extractor = keras.Model(model.inputs, pool.output, name="feature_extractor")
    features = keras.Input(tuple(pool.output.shape[1:]), name="features")
    return extractor, keras.Model(features, head_after(model, pool, features), name="head")


def head_after(model: keras.Model, layer: keras.Layer, x):
    """Apply the classifier's layers after ``layer`` (its head) to ``x``."""
    for later in model.layers[model.layers.index(layer) + 1 :]:
        x = later(x)
    return x


@dataclass(frozen=True)
class CachedViews:
    """``array[N, views, ...]`` (in RAM or memory-mapped) and ``labels[N]``; ``dtype`` is what the
    array's values mean (``"bfloat16"`` for uint16 bits)."""

    array: np.ndarray
    labels: np.ndarray
    dtype: str

    @property
    def streamed(self) -> bool:
        return isinstance(self.array, np.memmap)


def fingerprint(split, extra: dict) -> str:
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    if isinstance(split, FileSplit):
        for path, label in zip(split.paths, split.labels if split.targets is None else split.targets):
            h.update(f"{path}|{label}|".encode())
    else:
        h.update(repr(split).encode())
    return h.hexdigest()[:16]


def image_views(split, image_size: int, batch_size: int, views: tuple[str, ...], augment: str, seed: int):
    """``(per-view image batches, labels)`` for ``split`` in order: plain, mirrored or augmented views."""
    augmenter = None if views in (PLAIN_VIEW, FLIP_VIEWS) else Augmenter(parse_augment(augment), seed)
    for images, labels in image_dataset(split, image_size, batch_size, training=False):
        if augmenter is not None:
            yield [augmenter(images, labels)[0] for _ in views], labels
        elif views == FLIP_VIEWS:
            yield [images, tf.image.flip_left_right(images)], labels
        else:
            yield [images], labels


def cached_batches(source: CachedViews, batch_size: int):
    """``(per-view batches, labels)`` of a cache in order, so a model can be applied to it."""
    for start in range(0, len(source.labels), batch_size):
        stop = start + batch_size
        views = [_readable(source.array[start:stop, v], source.dtype) for v in range(source.array.shape[1])]
        yield views, source.labels[start:stop]


def extract(
    model: keras.Model,
    batches: Iterable,
    *,
    split,
    count: int | None,
    cache_dir: Path,
    name: str,
    identity: dict,
    log=print,
    what: str = "backbone features",
) -> CachedViews:
    """``model`` applied to every view of ``batches`` (of ``split``, ``count`` examples when known),
    stored under ``cache_dir``; read back when ``identity`` (which must fix the model, the data
    and the views) was cached before."""
    stem = cache_dir / f"{name}-{fingerprint(split, identity)}"
    remove_leftovers(cache_dir, log)
    problem = _problem(stem) if stem.with_suffix(".json").exists() else None
    if problem:
        log(f"The cache {stem}.npy ({what}, {name}) {problem}; extracting it again.")
    if problem or not stem.with_suffix(".json").exists():
        log(f"Caching {what} for {name} ({', '.join(identity['views'])})...")
        count, dtype = _write(model, batches, count, stem)
        # Written last: its presence says the arrays are complete, its record what they must be.
        record = {name: _describe(Path(f"{stem}{name}")) for name in _ARRAYS}
        write_json(stem.with_suffix(".json"), {**identity, "count": count, "dtype": dtype, "files": record})
    return load(stem)


_ARRAYS = (".npy", ".labels.npy")


def load(stem: Path) -> CachedViews:
    """A cache written by ``extract``: in RAM up to ``RAM_LIMIT_BYTES``, memory-mapped beyond."""
    path = Path(f"{stem}.npy")
    dtype = json.loads(stem.with_suffix(".json").read_text())["dtype"]
    array = np.load(path, mmap_mode="r" if path.stat().st_size > RAM_LIMIT_BYTES else None)
    return CachedViews(array, np.load(f"{stem}.labels.npy"), dtype)


def remove_leftovers(cache_dir: Path, log=print) -> None:
    """Delete the temporary files a killed extraction left in ``cache_dir`` (and nothing else)."""
    if not cache_dir.is_dir():
        return
    for path in cache_dir.iterdir():
        if _LEFTOVER.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink()
            log(f"Removed {path.name}, left in {cache_dir} by an interrupted extraction.")


def _describe(path: Path) -> dict:
    """What a complete array file must still be: its ``.npy`` header, byte size and checksum."""
    array = np.load(path, mmap_mode="r")
    return {
        "shape": list(array.shape),
        "dtype": array.dtype.str,
        "bytes": path.stat().st_size,
        "sha256": _checksum(path),
    }


def _checksum(path: Path) -> str:
    """SHA-256 of the whole file, or of evenly spaced blocks (and the size) for a large one."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _FULL_CHECKSUM_BYTES:
            for block in iter(lambda: f.read(_BLOCK_BYTES), b""):
                digest.update(block)
        else:
            for i in range(_SAMPLED_BLOCKS):
                f.seek(max(0, size - _BLOCK_BYTES) * i // (_SAMPLED_BLOCKS - 1))
                digest.update(f.read(_BLOCK_BYTES))
    return digest.hexdigest()


def _problem(stem: Path) -> str | None:
    """Why the cache at ``stem`` cannot be trusted (changed, truncated, non-finite), or ``None``."""
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        record = meta.get("files")
        if not isinstance(record, dict):
            return "has no checksum (an older kerasimg wrote it)"
        for suffix in _ARRAYS:
            path = Path(f"{stem}{suffix}")
            expected = record[suffix]
            if not path.exists():
                return f"is incomplete ({path.name} is missing)"
            if path.stat().st_size != expected["bytes"]:
                size = path.stat().st_size
                return f"is truncated or changed ({path.name}: {size:,} bytes, {expected['bytes']:,} written)"
            if _describe(path) != expected:
                return f"does not match its checksum ({path.name} changed since it was written)"
        if not _all_finite(Path(f"{stem}.npy"), meta["dtype"]):
            return "holds non-finite values (NaN or infinity)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"cannot be read ({type(error).__name__}: {str(error)[:120]})"
    return None


def _all_finite(path: Path, dtype: str) -> bool:
    """Every value finite; checked in chunks so a memory-mapped cache is never loaded whole."""
    array = np.load(path, mmap_mode="r")
    rows = max(1, (64 << 20) // max(1, array[:1].nbytes))
    for start in range(0, len(array), rows):
        chunk = np.asarray(array[start : start + rows])
        if dtype == "bfloat16":  # uint16 bits: an all-ones exponent is infinity or NaN
            if np.any((chunk & 0x7F80) == 0x7F80):
                return False
        elif not np.all(np.isfinite(chunk)):
            return False
    return True


def _write(model: keras.Model, batches: Iterable, count: int | None, stem: Path) -> tuple[int, str]:
    """Stream ``model``'s outputs into ``stem.npy`` and the labels into ``stem.labels.npy``;
    returns the number of examples and the outputs' dtype."""
    state: dict = {"offset": 0, "labels": [], "chunks": [], "dtype": None}

    def write(tmp: str) -> None:
        array = None
        # Counted in images, whose total is known, so the bar shows how far along it is and its ETA.
        bar = progress_bar(count, "image")
        for views, labels in batches:
            # predict(), not predict_on_batch(): the latter duplicates the batch per replica under
            # MirroredStrategy.
            outputs = np.stack([model.predict(v, batch_size=len(v), verbose=0) for v in views], axis=1)
            state["dtype"] = str(outputs.dtype)
            stored = _storable(outputs)
            if count is None:  # a split of unknown size (TFDS): kept in RAM, then saved
                state["chunks"].append(stored)
            else:
                if array is None:
                    array = np.lib.format.open_memmap(tmp, "w+", stored.dtype, (count, *stored.shape[1:]))
                array[state["offset"] : state["offset"] + len(stored)] = stored
            state["offset"] += len(stored)
            state["labels"].append(np.asarray(labels))
            bar.update(state["offset"])
        if array is not None and state["offset"] < count:  # files the pipeline skipped (--verify pipeline)
            kept = np.array(array[: state["offset"]])
            del array
            np.save(tmp, kept, allow_pickle=False)
        elif array is not None:
            array.flush()
            del array
        else:
            np.save(tmp, np.concatenate(state["chunks"]), allow_pickle=False)

    atomic_write(f"{stem}.npy", write)
    atomic_write(f"{stem}.labels.npy", lambda tmp: np.save(tmp, np.concatenate(state["labels"])))
    return state["offset"], state["dtype"]


def _storable(array: np.ndarray) -> np.ndarray:
    return array.view(np.uint16) if array.dtype.name == "bfloat16" else array


def _readable(array: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values as float32 (exact for bfloat16 and float16), what the models take in."""
    if dtype == "bfloat16":
        return (np.asarray(array, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(array, np.float32)


def view_order(
    labels: np.ndarray, views: int, *, training: bool, seed: int = 0, num_classes: int | None = None
) -> tf.data.Dataset:
    """``(index, view, label)`` per example: in training shuffled like the image pipeline, with one
    random view each; in evaluation in order, the plain view.

    Build it once per split and derive every cached dataset of the run from it (``views_dataset``):
    its shuffling then continues from phase to phase, epoch by epoch, as the one image
    pipeline's does, whichever cache a phase reads.
    """
    multi_hot = labels.ndim == 2  # multi-label targets, already what the loss takes
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(labels)), labels.astype("float32" if multi_hot else "int32"))
    )
    if num_classes is not None and not multi_hot:  # what label smoothing needs
        ds = ds.map(lambda i, y: (i, tf.one_hot(y, num_classes)))
    if training:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if training and views > 1:
        # Not tf.random.uniform inside map(): that restarts its sequence every epoch, giving each
        # position in the batch order the same view each time. Dataset.random draws anew.
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(ds, draws).map(lambda iy, r: (iy[0], tf.cast(r % views, tf.int32), iy[1]))
    return ds.map(lambda i, y: (i, tf.constant(0), y))


def views_dataset(source: CachedViews, order: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches of ``(values, labels)`` in ``order`` (``view_order``); rows are read by index, so a
    memory-mapped cache streams from disk."""
    read = _row_reader(source)
    shape = source.array.shape[2:]

    def rows(index, view, labels):
        values = tf.numpy_function(read, [index, view], tf.float32, stateful=False)
        return tf.ensure_shape(values, [None, *shape]), labels

    return order.batch(batch_size).map(rows).prefetch(tf.data.AUTOTUNE)


def _row_reader(source: CachedViews) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def read(index: np.ndarray, view: np.ndarray) -> np.ndarray:
        order = np.argsort(index)  # sequential reads from a memory-mapped file
        values = np.empty((len(index), *source.array.shape[2:]), np.float32)
        values[order] = _readable(source.array[index[order], view[order]], source.dtype)
        return values

    return read
