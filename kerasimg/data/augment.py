"""Training augmentation: named presets that expand into explicit operations, run in the input pipeline.

Like timm's ``create_transform``: ``--augment`` takes a preset (``none``, ``flip``,
``light``, ``randaugment``, ``strong``) or a comma list of operations with optional
``:``-separated arguments, e.g. ``rrc,flip,randaugment:2:9,mixup:0.2,cutmix:1.0,erasing:0.25``.
Every operation is a Keras preprocessing layer except random-resized-crop, which
Keras lacks. Augmentation runs on batches inside ``tf.data`` and never enters a
saved model. MixUp and CutMix mix the labels too, so they need one-hot labels; with
both, each batch gets one of them (as timm's ``Mixup`` switches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import tensorflow as tf

from kerasimg.data.rand_augment import SelectiveRandAugment
from kerasimg.errors import ArgumentError

PRESETS = {
    "none": "",
    "flip": "flip",
    "light": "rrc,flip",
    "randaugment": "rrc,flip,randaugment:2:9",
    "strong": "rrc,flip,randaugment:2:9,mixup:0.2,cutmix:1.0,erasing:0.25",
}
# name -> (default arguments, what each argument is)
OPERATIONS = {
    "rrc": ((0.08,), "the smallest area kept, as a fraction (0-1]"),
    "flip": ((), ""),
    "randaugment": ((2, 9), "the number of operations and their magnitude out of 10"),
    "mixup": ((0.2,), "the Beta distribution's alpha"),
    "cutmix": ((1.0,), "the Beta distribution's alpha"),
    "erasing": ((0.25,), "the probability of erasing a patch"),
}
MIXING = ("mixup", "cutmix")
# What a cache holds for no augmentation and for flips: every image the pipeline can produce.
PLAIN_VIEW, FLIP_VIEWS = ("plain",), ("plain", "flipped")


@dataclass(frozen=True)
class Augmentation:
    """An ordered tuple of ``(operation, arguments)``: what a preset or list means."""

    operations: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @property
    def spec(self) -> str:
        """The explicit comma list (recorded in ``config.json``)."""
        return ",".join(name + "".join(f":{a:g}" for a in args) for name, args in self.operations) or "none"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.operations)

    @property
    def mixes_labels(self) -> bool:
        return any(name in MIXING for name in self.names)

    @property
    def cached_views(self) -> tuple[str, ...] | None:
        """The views a cache holds exactly, or ``None`` when the augmentation is too rich for that."""
        if not self.operations:
            return PLAIN_VIEW
        if self.names == ("flip",):
            return FLIP_VIEWS
        return None

    def views_to_cache(self, count: int | None) -> tuple[str, ...] | None:
        """The exact views, else ``count`` augmented ones (``--cache-views``), else ``None``."""
        if self.cached_views is not None or count is None:
            return self.cached_views
        return tuple(f"augmented-{i}" for i in range(1, count + 1))


def parse_augment(augment: str) -> Augmentation:
    """A preset name or an operation list -> ``Augmentation``; ``ArgumentError`` naming the bad part."""
    text = PRESETS.get(augment, augment)
    operations = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, *raw = part.split(":")
        if name not in OPERATIONS:
            raise ArgumentError(
                "augment",
                f"takes a preset ({', '.join(PRESETS)}) or a comma list of {', '.join(OPERATIONS)} "
                f"with ':'-separated arguments; {name!r} is neither",
                augment,
            )
        defaults, meaning = OPERATIONS[name]
        if len(raw) > len(defaults):
            raise ArgumentError(
                "augment", f"gives {name} too many arguments ({meaning or 'it takes none'})", augment
            )
        try:
            args = tuple(float(v) for v in raw) + defaults[len(raw) :]
        except ValueError:
            raise ArgumentError(
                "augment", f"needs numbers as {name}'s arguments ({meaning})", augment
            ) from None
        if any(not math.isfinite(a) or a < 0 for a in args) or (
            name in ("rrc", "erasing") and not 0 < args[0] <= 1
        ):
            raise ArgumentError("augment", f"has an out-of-range argument for {name} ({meaning})", augment)
        if name == "randaugment" and not (args[0] >= 1 and args[0] == int(args[0]) and args[1] <= 10):
            raise ArgumentError(
                "augment", "needs randaugment:OPS:MAGNITUDE with whole OPS >= 1 and MAGNITUDE 0-10", augment
            )
        if name in MIXING and args[0] <= 0:
            raise ArgumentError("augment", f"needs a positive alpha for {name}", augment)
        if name in [n for n, _ in operations]:
            raise ArgumentError("augment", f"lists {name} twice", augment)
        operations.append((name, args))
    return Augmentation(tuple(operations))


def random_resized_crop(images: tf.Tensor, min_area: float, seed: tf.Tensor) -> tf.Tensor:
    """Inception-style crops: area in [min_area, 1], aspect ratio in [3/4, 4/3], resized back."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    area = tf.random.stateless_uniform([batch], seeds[0], min_area, 1.0)
    log_ratio = tf.random.stateless_uniform([batch], seeds[1], math.log(3 / 4), math.log(4 / 3))
    ratio = tf.exp(log_ratio)
    height = tf.minimum(tf.sqrt(area / ratio), 1.0)
    width = tf.minimum(tf.sqrt(area * ratio), 1.0)
    top = tf.random.stateless_uniform([batch], seeds[2]) * (1.0 - height)
    left = tf.random.stateless_uniform([batch], seeds[3]) * (1.0 - width)
    return tf.clip_by_value(crop_boxes(images, top, left, height, width), 0.0, 255.0)


def crop_boxes(images: tf.Tensor, top, left, height, width) -> tf.Tensor:
    """Each image's box (fractions of its side) resized back to the image's size, bilinear.

    The same samples as ``tf.image.crop_and_resize``, written as an affine image
    transform: inside ``tf.data``, TensorFlow's graph optimiser logs a warning for every
    ``CropAndResize`` it meets (it has no cost model for it), which filled the console
    on every epoch of crop augmentation.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    rows = tf.cast(tf.shape(images)[1] - 1, tf.float32)
    columns = tf.cast(tf.shape(images)[2] - 1, tf.float32)
    zeros = tf.zeros_like(top)
    # Output pixel (x, y) reads input (width * x + left * columns, height * y + top * rows).
    transforms = tf.stack([width, zeros, left * columns, zeros, height, top * rows, zeros, zeros], axis=1)
    crops = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        interpolation="BILINEAR",
        fill_mode="NEAREST",
        fill_value=0.0,
    )
    # A tensor output_shape forgets the static height and width, and Keras's CutMix then mixes
    # int32 and float32 sizes inside tf.data (``--augment strong`` failed to build there).
    crops.set_shape(images.shape)
    return crops


class Augmenter:
    """``(images, labels) -> (images, labels)`` for a batch; labels are one-hot when it mixes them."""

    def __init__(self, augmentation: Augmentation, seed: int = 0):
        self.augmentation = augmentation
        self.seed = seed
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        args = dict(augmentation.operations)
        self.layers = {}
        if "flip" in args:
            self.layers["flip"] = keras.layers.RandomFlip("horizontal", seed=seed)
        if "randaugment" in args:
            num_ops, magnitude = args["randaugment"]
            self.layers["randaugment"] = SelectiveRandAugment(
                value_range=(0, 255), num_ops=int(num_ops), factor=min(magnitude / 10, 1.0), seed=seed
            )
        if "mixup" in args:
            self.layers["mixup"] = keras.layers.MixUp(alpha=args["mixup"][0], seed=seed)
        if "cutmix" in args:
            self.layers["cutmix"] = keras.layers.CutMix(factor=args["cutmix"][0], seed=seed)
        if "erasing" in args:
            self.layers["erasing"] = keras.layers.RandomErasing(
                factor=args["erasing"][0], value_range=(0, 255), seed=seed
            )

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seed = tf.stack([tf.constant(self.seed, tf.int64), self._step.assign_add(1)])
        mixers = [name for name in MIXING if name in self.layers]
        for name, args in self.augmentation.operations:
            if name == "rrc":
                images = random_resized_crop(images, args[0], seed)
            elif name in MIXING:
                if name == mixers[0]:
                    images, labels = self._mix(images, labels, mixers, seed)
            else:
                images = self.layers[name](images, training=True)
        return tf.cast(images, tf.float32), labels

    def _mix(self, images, labels, mixers, seed):
        def apply(name):
            out = self.layers[name]({"images": images, "labels": labels}, training=True)
            return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

        if len(mixers) == 1:
            return apply(mixers[0])
        use_first = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 7)) < 0.5
        return tf.cond(use_first, lambda: apply(mixers[0]), lambda: apply(mixers[1]))
