"""Decode image bytes safely inside a TensorFlow graph: size read from the header, EXIF honoured.

The same functions serve the training pipeline and the exported ``serving_default``
signature, so a REST client sending a phone's raw JPEG gets the answer the pixels
deserve. Two things TensorFlow's ``decode_image`` does not do:

* refuse an image whose *header* claims more pixels than ``max_pixels`` before
  decoding it (a 389 KB PNG can decode to 1.2 GB), and
* turn the picture upright as its EXIF orientation tag says (JPEG only, as
  Pillow's ``ImageOps.exif_transpose`` does).
"""

from __future__ import annotations

import tensorflow as tf

# Pillow's decompression-bomb error limit (2 x Image.MAX_IMAGE_PIXELS): large phone photos pass.
DEFAULT_MAX_PIXELS = 178_956_970

_HEAD = 32  # bytes of header that hold the dimensions of PNG, GIF and BMP
_EXIF_WINDOW = 65_536  # an APP1 segment is at most 64 KB, and sits before the image data
_MAX_IFD_ENTRIES = 64
_ORIENTATION_TAG = 0x0112


def _bytes(contents: tf.Tensor, length: int) -> tf.Tensor:
    """The first ``length`` bytes as int64, zero-padded so every index below ``length`` is valid."""
    head = tf.strings.substr(contents, 0, length) + tf.constant(b"\0" * length)
    head = tf.strings.substr(head, 0, length)
    return tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)


def _little(b: tf.Tensor, offset: int, width: int) -> tf.Tensor:
    return sum(b[offset + i] * (256**i) for i in range(width))


def _big(b: tf.Tensor, offset: int, width: int) -> tf.Tensor:
    return sum(b[offset + i] * (256 ** (width - 1 - i)) for i in range(width))


def header_size(contents: tf.Tensor) -> tf.Tensor:
    """``[height, width]`` (int64) from a JPEG, PNG, GIF or BMP header; ``[0, 0]`` for other bytes.

    Nothing is decoded: JPEG goes through ``tf.io.extract_jpeg_shape``, the others are
    read from their fixed header fields.
    """
    b = _bytes(contents, _HEAD)
    is_jpeg = (b[0] == 0xFF) & (b[1] == 0xD8) & (b[2] == 0xFF)
    is_png = (b[0] == 0x89) & (b[1] == 0x50) & (b[2] == 0x4E) & (b[3] == 0x47)
    is_gif = (b[0] == 0x47) & (b[1] == 0x49) & (b[2] == 0x46) & (b[3] == 0x38)
    is_bmp = (b[0] == 0x42) & (b[1] == 0x4D)
    kind = tf.argmax(tf.stack([False, is_jpeg, is_png, is_gif, is_bmp]), output_type=tf.int32)

    def sized(height, width):
        return tf.cast(tf.stack([height, width]), tf.int64)

    return tf.switch_case(
        kind,
        [
            lambda: sized(0, 0),
            lambda: tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.int64),
            lambda: sized(_big(b, 20, 4), _big(b, 16, 4)),
            lambda: sized(_little(b, 8, 2), _little(b, 6, 2)),
            # BMP heights are negative for top-down rows; the unsigned field then reads >= 2^31.
            lambda: sized(tf.abs(_signed32(_little(b, 22, 4))), _little(b, 18, 4)),
        ],
    )


def _signed32(value: tf.Tensor) -> tf.Tensor:
    return tf.where(value >= 2**31, value - 2**32, value)


def exif_orientation(contents: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (1-8) of a JPEG, or 1 when it has none or is not a JPEG."""
    b = _bytes(contents, 2 * _EXIF_WINDOW)  # the IFD may lie past the window searched
    n = _EXIF_WINDOW
    limit = 2 * _EXIF_WINDOW - 1
    # An APP1 segment: FF E1, two length bytes, then "Exif\0\0" and the TIFF header.
    pattern = {0: 0xFF, 1: 0xE1, 4: 0x45, 5: 0x78, 6: 0x69, 7: 0x66, 8: 0, 9: 0}
    found = tf.reduce_all(tf.stack([b[k : k + n] == v for k, v in pattern.items()]), axis=0)
    starts = tf.where(found)[:, 0]
    is_jpeg = (b[0] == 0xFF) & (b[1] == 0xD8)

    def parse():
        tiff = starts[0] + 10
        little = b[tiff] == 0x49  # "II" little-endian, "MM" big-endian

        def read(offsets, width):
            """Unsigned integers of ``width`` bytes at ``tiff + offsets``, in the file's byte order."""
            index = tiff + offsets[..., None] + tf.range(width, dtype=tf.int64)
            parts = tf.gather(b, tf.clip_by_value(index, 0, limit))
            weights_le = tf.constant([256**i for i in range(width)], tf.int64)
            weights_be = tf.reverse(weights_le, [0])
            return tf.reduce_sum(parts * tf.where(little, weights_le, weights_be), axis=-1)

        ifd = read(tf.constant(4, tf.int64), 4)
        count = tf.minimum(read(ifd, 2), _MAX_IFD_ENTRIES)
        entries = ifd + 2 + 12 * tf.range(_MAX_IFD_ENTRIES, dtype=tf.int64)
        tags = read(entries, 2)
        values = read(entries + 8, 2)
        hit = (tags == _ORIENTATION_TAG) & (tf.range(_MAX_IFD_ENTRIES, dtype=tf.int64) < count)
        value = tf.reduce_max(tf.where(hit, values, 0))
        return tf.cast(tf.where((value >= 1) & (value <= 8), value, 1), tf.int32)

    return tf.cond(is_jpeg & (tf.size(starts) > 0), parse, lambda: tf.constant(1))


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Turn ``image`` [H, W, C] upright as EXIF ``orientation`` says (Pillow's ``exif_transpose``)."""

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    oriented = tf.switch_case(
        tf.clip_by_value(tf.cast(orientation, tf.int32), 1, 8) - 1,
        [
            lambda: image,
            lambda: image[:, ::-1],  # 2: mirrored
            lambda: image[::-1, ::-1],  # 3: upside down
            lambda: image[::-1],  # 4: flipped vertically
            lambda: transpose(image),  # 5: transposed
            lambda: tf.image.rot90(image, k=3),  # 6: rotate 90 degrees clockwise
            lambda: transpose(image[::-1, ::-1]),  # 7: transversed
            lambda: tf.image.rot90(image, k=1),  # 8: rotate 90 degrees counter-clockwise
        ],
    )
    oriented.set_shape([None, None, image.shape[-1]])
    return oriented


def check_pixels(contents: tf.Tensor, max_pixels: int) -> tf.Operation:
    """An assertion that fails with ``InvalidArgumentError`` when the header claims too many pixels."""
    size = header_size(contents)
    known = tf.debugging.Assert(
        size[0] * size[1] > 0,
        [
            "kerasimg reads JPEG, PNG, GIF and BMP images; these bytes are none of them (WebP, for one, "
            "is refused because its size cannot be checked before decoding)."
        ],
    )
    with tf.control_dependencies([known]):
        return tf.debugging.Assert(
            size[0] * size[1] <= max_pixels,
            [
                f"The image is larger than this model accepts (max_pixels={max_pixels}); send a smaller "
                "image. Its header says [height, width] =",
                size,
            ],
        )


def decode_rgb(contents: tf.Tensor, max_pixels: int | None = None) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> upright uint8 RGB [H, W, 3]; refused before decoding if too large."""
    checks = [check_pixels(contents, max_pixels)] if max_pixels else []
    with tf.control_dependencies(checks):
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return apply_orientation(image, exif_orientation(contents))
