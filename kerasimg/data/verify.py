"""Check every image file once before training, so a bad file never crashes an epoch.

Files are decoded with the same TensorFlow decoder the pipeline uses, in parallel
threads, after their header's dimensions are checked against ``max_pixels`` (a
decompression bomb is refused without being decoded). Verdicts and dimensions are
cached by (path, size, mtime), so a second run over the same files is instant, and
a different ``max_pixels`` needs no re-decode.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.files import kerasimg_home, write_json

_CACHE_LOCK = threading.Lock()
# Below this many unchecked files a progress bar is more noise than help.
_PROGRESS_MIN_FILES = 200


def _cache_path() -> Path:
    return kerasimg_home() / "verified-files.json"


def _key(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"


def too_large(height: int, width: int, max_pixels: int) -> str | None:
    if height * width <= max_pixels:
        return None
    return (
        f"too large: {width}x{height} = {height * width:,} pixels, over --max-pixels {max_pixels:,} "
        "(a decompression bomb, or raise --max-pixels)"
    )


def check_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """``None`` when TensorFlow decodes ``path`` to an image within ``max_pixels``, else the reason."""
    verdict = _inspect(path, max_pixels)
    if verdict.startswith(("ok:", "big:")):
        height, width = map(int, verdict.split(":")[1].split(","))
        return too_large(height, width, max_pixels)
    return verdict


def _inspect(path: str, max_pixels: int) -> str:
    """``ok:H,W`` (decoded), ``big:H,W`` (header over ``max_pixels``, not decoded) or a reason."""
    import tensorflow as tf

    from kerasimg.data.decode import header_size

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        contents = tf.io.read_file(path)
        height, width = (int(v) for v in header_size(contents).numpy())
        if height * width == 0:
            return "not a readable image (not a JPEG, PNG, GIF or BMP file)"
        if too_large(height, width, max_pixels):
            return f"big:{height},{width}"
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        if image.shape[0] == 0 or image.shape[1] == 0:
            return "image has no pixels"
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        message = str(error.message).strip().splitlines()
        return f"not a readable image ({message[0][:120] if message else 'decode failed'})"
    except OSError as error:
        return f"cannot read file ({error.strerror})"
    return f"ok:{image.shape[0]},{image.shape[1]}"


def _verdict(cached: str | None, max_pixels: int) -> tuple[bool, str | None]:
    """``(known, reason)`` from a cached entry: unknown for none, old-format or a bomb now allowed."""
    if not cached:
        return False, None  # never checked, or checked by a version that kept no dimensions
    if cached.startswith(("ok:", "big:")):
        height, width = map(int, cached.split(":")[1].split(","))
        reason = too_large(height, width, max_pixels)
        return (reason is not None or cached.startswith("ok:")), reason
    return True, cached


def verify_images(
    paths: list[str], progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS, log=print
) -> dict[str, str]:
    """Return ``{path: reason}`` for each file in ``paths`` that cannot be decoded within ``max_pixels``."""
    cache = _load_cache()
    keys = {path: _key(path) for path in paths}
    todo, bad = [], {}
    for path in paths:
        known, reason = _verdict(cache.get(keys[path]) if keys[path] else None, max_pixels)
        if not known:
            todo.append(path)
        elif reason:
            bad[path] = reason
    if todo:
        bar = None
        if progress and len(todo) >= _PROGRESS_MIN_FILES:
            import keras

            log(f"Checking {len(todo):,} image files (once; verdicts are cached)...")
            bar = keras.utils.Progbar(len(todo), unit_name="file")
        with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) * 2)) as pool:
            verdicts = pool.map(lambda path: _inspect(path, max_pixels), todo)
            for done, (path, verdict) in enumerate(zip(todo, verdicts), 1):
                _, reason = _verdict(verdict, max_pixels)
                if reason:
                    bad[path] = reason
                if keys[path] is not None:
                    cache[keys[path]] = verdict
                if bar is not None and (done % 50 == 0 or done == len(todo)):
                    bar.update(done)
        _save_cache(cache)
    return {p: bad[p] for p in paths if p in bad}


def _load_cache() -> dict[str, str]:
    try:
        with open(_cache_path(), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict[str, str]) -> None:
    with _CACHE_LOCK:
        merged = {**_load_cache(), **cache}
        try:
            write_json(_cache_path(), merged)
        except OSError:
            pass  # A read-only cache folder only costs the next run a re-check.
