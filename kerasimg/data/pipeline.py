"""The ``tf.data`` pipeline: decode, resize, shuffle, augment, batch, cache, prefetch.

Images leave the pipeline as float32 RGB in 0-255 at the model's size; the
backbone's own scaling is the model's first layer (``kerasimg.models.preprocessing``),
so a saved or exported model takes the same raw pixels.
"""

from __future__ import annotations

import tensorflow as tf

from kerasimg.data.augment import PRESETS, Augmenter, parse_augment
from kerasimg.data.decode import decode_rgb
from kerasimg.data.sharding import ProcessShard
from kerasimg.data.splits import FileSplit
from kerasimg.errors import ArgumentError, UserError

# The presets of ``--augment`` (kerasimg.data.augment has the explicit operation lists too).
AUGMENTATIONS = tuple(PRESETS)
AUTOTUNE = tf.data.AUTOTUNE


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """Greyscale and RGBA images to RGB (the channel count is static after decoding)."""
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    return image


def load_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG, PNG, BMP or GIF (first frame) file -> float32 [size, size, 3] in 0-255, EXIF upright."""
    return resize(decode_rgb(tf.io.read_file(path)), image_size)


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    return tf.image.resize(to_rgb(image), (image_size, image_size))


def checked_images(ds: tf.data.Dataset, image_size: int, recorder) -> tf.data.Dataset:
    """``(path, label, *rest)`` -> ``(image, label, ok, *rest)``: ``ok`` is false for a bad file.

    A file that cannot be read or decoded, or whose header claims more than
    ``recorder.max_pixels``, gets a black placeholder and ``ok=False``, and is handed to
    ``recorder.record`` as it is met. Each file is decoded in a one-element dataset whose
    error is ignored, followed by the placeholder: the first of the two tells which
    happened, in the graph, so only a bad file costs a Python call. (``ignore_errors`` on
    the whole pipeline would drop bad files without saying which.) The order is kept.
    """
    max_pixels = recorder.max_pixels

    def attempt(path, label, *rest):
        decoded = tf.data.Dataset.from_tensors((path, label, *rest)).map(
            lambda p, y, *r: (p, resize(decode_rgb(tf.io.read_file(p), max_pixels), image_size), y, True, *r)
        )
        failed = (path, tf.zeros([image_size, image_size, 3]), label, False, *rest)
        return decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(failed)).take(1)

    def note(path):
        recorder.record(path.numpy().decode())
        return True

    def recorded(path, image, label, ok, *rest):
        noted = tf.cond(ok, lambda: True, lambda: tf.reshape(tf.py_function(note, [path], tf.bool), []))
        with tf.control_dependencies([noted]):
            return tf.identity(image), label, ok, *rest

    # One element out per element in: the length stays known, which interleave alone would lose.
    count = ds.cardinality()
    ds = ds.interleave(attempt, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.apply(tf.data.experimental.assert_cardinality(count)).map(recorded, num_parallel_calls=AUTOTUNE)


def _first_good(split: FileSplit, image_size: int, num_classes: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of one: the first file of ``split`` that decodes (a training split needs one)."""
    from kerasimg.data.verify import check_image

    for path, label in zip(split.paths, split.label_array()):
        if check_image(path, split.skips.max_pixels) is None:
            y = tf.constant([label])
            return load_image(tf.constant(path), image_size)[None], (
                y if num_classes is None or label.ndim else tf.one_hot(y, num_classes)
            )
    raise UserError(f"No file of the training split can be read as an image (of {len(split)} files).")


def _never_empty(previous, batch):
    """A batch whose every file was skipped becomes the last batch that had images (at first,
    ``_first_good``'s): Keras would train on an empty batch and BatchNorm would turn it into NaN."""
    chosen = tf.cond(tf.size(batch[1]) > 0, lambda: batch, lambda: previous)
    return chosen, chosen


def make_augmenter(augment: str, seed: int) -> Augmenter | None:
    """The batch augmenter for ``--augment`` (checked), or ``None`` for no augmentation."""
    augmentation = parse_augment(augment)
    return Augmenter(augmentation, seed) if augmentation.operations else None


def image_dataset(
    split,
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    augment: str = "flip",
    seed: int = 0,
    num_classes: int | None = None,
    shard: ProcessShard | None = None,
) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` for one split.

    With ``num_classes``, labels are one-hot (what label smoothing, MixUp and CutMix
    need); otherwise integer. A multi-label split's labels are its multi-hot ``targets``
    either way. Training data is reshuffled every epoch (seeded) and augmented; evaluation data
    keeps its order. Neither is cached in memory: a decoded 224 px split costs 600 KB
    an image (30 GB for an ImageNet-sized validation set), while decoding again runs
    two orders of magnitude faster than a CPU train step (``bench --mode input``).

    With ``shard`` (a multihost run), this process's part of every global batch of
    ``batch_size``, decoded from its own files only (``kerasimg.data.sharding``):
    evaluation batches are ``(images, labels, weights)``, weight 0 on the padding and
    on a file that cannot be read, and a bad training file is replaced by the one before it,
    so every process's batches stay whole.
    """
    local_batch = shard.local_batch(batch_size) if shard else batch_size

    def share(ds):
        return shard.take(ds, split_length(split), batch_size, weighted=not training) if shard else ds

    flagged = False  # training batches that still hold the files the pipeline could not read
    if isinstance(split, FileSplit):
        ds = tf.data.Dataset.from_tensor_slices((split.paths, split.label_array()))
        if training:
            ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
        ds = share(ds)
        if split.skips is None:  # checked before training (--verify full), or not at all
            ds = ds.map(lambda p, y, *w: (load_image(p, image_size), y, *w), num_parallel_calls=AUTOTUNE)
        else:  # checked as it is read (--verify pipeline): bad files flagged, then left out
            ds = checked_images(ds, image_size, split.skips)
            if shard and training:  # batches stay whole: a bad file's place goes to the one before
                ds = ds.scan(_first_good_image(split, image_size), _last_good).map(_without_flag)
            elif shard:  # the weight says which places count
                ds = ds.map(_flag_as_weight, num_parallel_calls=AUTOTUNE)
            else:
                # Training leaves them out of each batch, so the number of batches stays known and the
                # run is step for step the run of ``--verify full`` when no file is bad (Keras iterates
                # a dataset of unknown length differently); evaluation drops them one by one, so no
                # batch is empty.
                flagged = training
                ds = ds if training else ds.filter(_is_readable).map(_without_flag)
    elif hasattr(split, "encoded"):  # a packed split: the files' bytes from record shards, decoded as above
        ds = share(split.encoded(training=training, seed=seed)).map(
            lambda contents, y, *w: (resize(decode_rgb(contents), image_size), y, *w),
            num_parallel_calls=AUTOTUNE,
        )
    else:
        ds = split.images().map(
            lambda x, y: (resize(x, image_size), tf.cast(y, tf.int32)), num_parallel_calls=AUTOTUNE
        )
        if training:
            ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
        ds = share(ds)
    if num_classes is not None and ds.element_spec[1].shape.rank == 0:  # not if multi-hot already
        ds = ds.map(lambda x, y, *rest: (x, tf.one_hot(y, num_classes), *rest), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(local_batch)
    if flagged:
        ds = ds.map(lambda x, y, ok: (tf.boolean_mask(x, ok), tf.boolean_mask(y, ok)))
        ds = ds.scan(_first_good(split, image_size, num_classes), _never_empty)
    if training:
        # Each process augments its own images: seeded apart, so they do not all flip alike.
        ds = augmented(ds, augment, seed + (shard.index if shard else 0), one_hot=num_classes is not None)
    return ds.prefetch(AUTOTUNE)


def split_length(split) -> int:
    """The number of images of ``split``; one with no known size (a carved TFDS split) is counted
    by reading it once."""
    if hasattr(split, "__len__"):
        return len(split)
    return int(split.images().reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def augmented(batches: tf.data.Dataset, augment: str, seed: int, *, one_hot: bool) -> tf.data.Dataset:
    """``batches`` of ``(images, labels)`` through the ``--augment`` augmenter (``none``: unchanged)."""
    augmenter = make_augmenter(augment, seed)
    if augmenter is None:
        return batches
    if augmenter.augmentation.mixes_labels and not one_hot:
        raise ArgumentError("augment", "mixes labels (mixup, cutmix), which needs one-hot labels", augment)
    # One call at a time: the augmenter counts batches to seed each one differently.
    return batches.map(augmenter, num_parallel_calls=None)


def unlabelled_dataset(paths: list[str], image_size: int, batch_size: int) -> tf.data.Dataset:
    """Batches of images from files with no labels, in order (for prediction)."""
    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(lambda p: load_image(p, image_size), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def _is_readable(image, label, ok):
    """Named, not a lambda: AutoGraph cannot tell two lambdas on one line apart, and says so loudly."""
    return ok


def _without_flag(image, label, ok):
    return image, label


def _flag_as_weight(image, label, ok, weight):
    return image, label, weight * tf.cast(ok, weight.dtype)


def _first_good_image(split: FileSplit, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The first image of ``split`` that decodes and its label (not one-hot)."""
    images, labels = _first_good(split, image_size, None)
    return images[0], labels[0]


def _last_good(previous, element):
    """``(image, label, ok)`` -> the same, or, when the file could not be read, the last good one."""
    image, label, ok = element
    chosen = tf.cond(ok, lambda: (image, label), lambda: previous)
    return chosen, (*chosen, ok)
