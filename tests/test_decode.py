"""Image bytes decoded safely: dimensions from the header, a pixel limit, EXIF orientation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from helpers import bomb_png, encoded, oriented_jpeg, write_image
from PIL import Image, ImageOps

from kerasimg.data import load_data
from kerasimg.data.decode import DEFAULT_MAX_PIXELS, decode_rgb, exif_orientation, header_size
from kerasimg.data.pipeline import load_image
from kerasimg.data.verify import check_image

RNG = np.random.default_rng(0)
PICTURE = RNG.integers(0, 256, (30, 50, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_header_size_reads_height_and_width_without_decoding(fmt):
    assert header_size(tf.constant(encoded(PICTURE, fmt))).numpy().tolist() == [30, 50]


def test_header_size_of_a_bomb_and_of_other_bytes():
    assert header_size(tf.constant(bomb_png(20000, 30000))).numpy().tolist() == [20000, 30000]
    assert header_size(tf.constant(b"not an image")).numpy().tolist() == [0, 0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright_like_pillow(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(PICTURE, "JPEG", exif=exif, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"), np.float32)
    got = decode_rgb(tf.constant(data)).numpy().astype(np.float32)
    assert int(exif_orientation(tf.constant(data))) == orientation
    assert got.shape == expected.shape
    # The two JPEG decoders round differently by a few levels; a wrong turn differs by ~85.
    assert np.mean(np.abs(got - expected)) < 3


def test_images_without_exif_are_left_alone():
    for fmt in ("PNG", "JPEG"):
        data = encoded(PICTURE, fmt)
        assert int(exif_orientation(tf.constant(data))) == 1
        assert decode_rgb(tf.constant(data)).shape == (30, 50, 3)


def test_the_training_pipeline_loads_a_phone_jpeg_upright(tmp_path):
    upright = RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    path = tmp_path / "phone.jpg"
    path.write_bytes(oriented_jpeg(upright, 6))
    plain = tf.io.decode_jpeg(path.read_bytes()).numpy()
    expected = tf.image.resize(np.rot90(plain, -1), (40, 40)).numpy()
    np.testing.assert_allclose(load_image(tf.constant(str(path)), 40).numpy(), expected, atol=1e-3)


def test_a_decompression_bomb_is_refused_by_its_header_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(20000, 20000))
    reason = check_image(str(bomb))
    assert reason.startswith("too large: 20000x20000 = 400,000,000 pixels")
    assert f"--max-pixels {DEFAULT_MAX_PIXELS:,}" in reason
    small = write_image(tmp_path / "small.png", RNG, size=40)
    assert check_image(str(small)) is None
    assert check_image(str(small), max_pixels=1000).startswith("too large: 40x40")


def test_training_skips_images_over_max_pixels_and_lists_why(tmp_path):
    for name in ("a", "b"):
        for i in range(4):
            write_image(tmp_path / "data" / name / f"{i}.png", RNG, size=32)
    (tmp_path / "data" / "a" / "bomb.png").write_bytes(bomb_png(20000, 20000))
    large = write_image(tmp_path / "data" / "b" / "large.png", RNG, size=48)
    data = load_data(str(tmp_path / "data"), val_split=0.25)
    assert list(data.skipped) == [str(tmp_path / "data" / "a" / "bomb.png")]
    assert "too large" in data.skipped[str(tmp_path / "data" / "a" / "bomb.png")]
    # A smaller limit skips the 48 px image too, from the cached dimensions (no second decode).
    tighter = load_data(str(tmp_path / "data"), val_split=0.25, max_pixels=40 * 40)
    assert sorted(tighter.skipped) == sorted([str(tmp_path / "data" / "a" / "bomb.png"), str(large)])
    total = len(tighter.train) + len(tighter.val) + len(tighter.test)
    assert total == 8


def test_webp_is_refused_because_its_size_cannot_be_checked(tmp_path):
    path = tmp_path / "a.webp"
    path.write_bytes(encoded(PICTURE, "WEBP"))
    assert check_image(str(path)) == "not a readable image (not a JPEG, PNG, GIF or BMP file)"
    with pytest.raises(tf.errors.InvalidArgumentError, match="reads JPEG, PNG, GIF and BMP"):
        decode_rgb(tf.constant(path.read_bytes()), max_pixels=10**6)
