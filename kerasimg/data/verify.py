"""Check every image file once before training, so a bad file never crashes an epoch.

Files are decoded with the same TensorFlow decoder the pipeline uses, in parallel
threads. Verdicts are cached by (path, size, mtime), so a second run over the
same files is instant.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def check_image(path: str) -> str | None:
    """``None`` when TensorFlow decodes ``path`` to an image, else the reason it cannot."""
    import tensorflow as tf

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        if image.shape[0] == 0 or image.shape[1] == 0:
            return "image has no pixels"
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        message = str(error.message).strip().splitlines()
        return f"not a readable image ({message[0][:120] if message else 'decode failed'})"
    except OSError as error:
        return f"cannot read file ({error.strerror})"
    return None


def verify_images(paths: list[str], progress: bool = True) -> dict[str, str]:
    """Return ``{path: reason}`` for each file in ``paths`` that cannot be decoded."""
    cache = _load_cache()
    keys = {path: _key(path) for path in paths}
    todo = [p for p in paths if keys[p] is None or keys[p] not in cache]
    bad = {p: cache[keys[p]] for p in paths if keys[p] in cache and cache[keys[p]]}
    if todo:
        bar = None
        if progress and len(todo) >= _PROGRESS_MIN_FILES:
            import keras

            print(f"Checking {len(todo):,} image files (once; verdicts are cached)...")
            bar = keras.utils.Progbar(len(todo), unit_name="file")
        with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) * 2)) as pool:
            for done, (path, reason) in enumerate(zip(todo, pool.map(check_image, todo)), 1):
                if reason:
                    bad[path] = reason
                if keys[path] is not None:
                    cache[keys[path]] = reason or ""
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
