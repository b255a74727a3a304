"""The tf.data pipeline: any common format to RGB at the model's size, seeded augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import write_image

from kerasimg.data import FileSplit, image_dataset
from kerasimg.errors import UserError


@pytest.mark.parametrize(
    "name, mode",
    [("grey.png", "L"), ("rgba.png", "RGBA"), ("pic.bmp", "RGB"), ("anim.gif", "P"), ("photo.jpg", "RGB")],
)
def test_formats_and_channel_counts_decode_to_rgb_at_size(tmp_path, name, mode):
    path = write_image(tmp_path / name, np.random.default_rng(0), size=50, mode=mode)
    ds = image_dataset(FileSplit([str(path)], [0]), 32, 1, training=False)
    images, labels = next(iter(ds))
    assert images.shape == (1, 32, 32, 3) and images.dtype == tf.float32
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    assert labels.numpy().tolist() == [0]


def test_flip_augmentation_is_seeded_and_only_flips(tmp_path):
    rng = np.random.default_rng(0)
    paths = [str(write_image(tmp_path / f"{i}.png", rng, size=32)) for i in range(8)]
    split = FileSplit(paths, list(range(8)))

    def epoch(seed):
        tf.random.set_seed(seed)
        x, y = next(iter(image_dataset(split, 32, 8, training=True, augment="flip", seed=seed)))
        return x.numpy(), y.numpy()

    plain = {int(y): x for x, y in zip(*next(iter(image_dataset(split, 32, 8, training=False))))}
    x1, y1 = epoch(5)
    x2, y2 = epoch(5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    flipped = 0
    for image, label in zip(x1, y1):
        original = plain[int(label)]
        if np.array_equal(image, original[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(image, original)
    assert 0 < flipped < 8  # some images mirrored, some left as they were


def test_unknown_augmentation_is_a_clear_error():
    message = "augment takes a preset.*'jitter' is neither. Received: augment='jitter'"
    with pytest.raises(UserError, match=message):
        image_dataset(FileSplit(["x.jpg"], [0]), 32, 1, training=True, augment="jitter")
