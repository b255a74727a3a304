"""Check image files so a bad file never crashes an epoch, and remember every verdict.

Files are decoded with the same TensorFlow decoder the pipeline uses, in parallel
threads, after their header's dimensions are checked against ``max_pixels`` (a
decompression bomb is refused without being decoded). Verdicts and dimensions are
kept in a SQLite store (``VerdictStore``) keyed by (path, size, mtime), so a second
run over the same files is instant, a different ``max_pixels`` needs no re-decode,
and a check that is killed resumes where it stopped: verdicts are committed in
batches as files are checked.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.files import kerasimg_home
from kerasimg.progress import progress_bar

# Below this many unchecked files a progress bar is more noise than help.
_PROGRESS_MIN_FILES = 200
# Verdicts are committed at least this often (in files, and in seconds), so a killed check loses little.
_COMMIT_EVERY = 500
_COMMIT_SECONDS = 2.0
# Keys looked up per query (SQLite's bound-parameter limit is 32,766 since 3.32, 999 before).
_LOOKUP_CHUNK = 900


def _store_path() -> Path:
    return kerasimg_home() / "verified-files.sqlite"


def _legacy_path() -> Path:
    """The single JSON file earlier versions kept; imported into the store once, then removed."""
    return kerasimg_home() / "verified-files.json"


class VerdictStore:
    """Per-file verdicts in a SQLite database (WAL mode): read in chunks, written in batches.

    Several processes may check the same files at once: SQLite serialises their writes,
    and a verdict is the same whoever writes it. A store that cannot be opened (a
    read-only cache folder) behaves as an empty one that forgets what it is told.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else _store_path()
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")
            db.commit()
            self._db = db
        except (OSError, sqlite3.Error):
            return  # A read-only cache folder only costs the next run a re-check.
        if path is None:
            self._import_legacy(_legacy_path())

    def _import_legacy(self, legacy: Path) -> None:
        try:
            with open(legacy, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            return
        if isinstance(old, dict):
            self.put_many((k, v) for k, v in old.items() if isinstance(k, str) and isinstance(v, str))
        legacy.unlink(missing_ok=True)

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """``{key: verdict}`` for those of ``keys`` the store knows, looked up a chunk at a time."""
        found: dict[str, str] = {}
        if self._db is None:
            return found
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            try:
                rows = self._db.execute(f"SELECT key, verdict FROM verdicts WHERE key IN ({marks})", chunk)
                found.update(rows)
            except sqlite3.Error:
                return found
        return found

    def put_many(self, items) -> None:
        """Store ``(key, verdict)`` pairs in one transaction."""
        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO verdicts (key, verdict) VALUES (?, ?)", items)
        except sqlite3.Error:
            pass  # a full disk or a read-only store: the next run checks these files again

    def __len__(self) -> int:
        if self._db is None:
            return 0
        return self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> VerdictStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_key(path: str) -> str | None:
    """``abspath|size|mtime_ns``: a file's identity for its verdict (``None`` if it cannot be stat'ed)."""
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
    """Return ``{path: reason}`` for each file in ``paths`` that cannot be decoded within ``max_pixels``.

    Verdicts come from the store where it has them; the rest are checked and committed
    in batches as they finish, so an interrupted check resumes where it stopped.
    """
    keys = {path: file_key(path) for path in paths}
    with VerdictStore() as store:
        cache = store.get_many([k for k in keys.values() if k is not None])
        todo, bad = [], {}
        for path in paths:
            known, reason = _verdict(cache.get(keys[path]) if keys[path] else None, max_pixels)
            if not known:
                todo.append(path)
            elif reason:
                bad[path] = reason
        del cache
        if todo:
            bar = None
            if progress and len(todo) >= _PROGRESS_MIN_FILES:
                log(f"Checking {len(todo):,} image files (once; verdicts are kept)...")
                bar = progress_bar(len(todo), "file")
            pending, committed = [], time.monotonic()
            with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) * 2)) as pool:
                verdicts = pool.map(lambda path: _inspect(path, max_pixels), todo)
                for done, (path, verdict) in enumerate(zip(todo, verdicts), 1):
                    _, reason = _verdict(verdict, max_pixels)
                    if reason:
                        bad[path] = reason
                    if keys[path] is not None and not verdict.startswith("cannot read file"):
                        pending.append((keys[path], verdict))
                    if len(pending) >= _COMMIT_EVERY or time.monotonic() - committed > _COMMIT_SECONDS:
                        store.put_many(pending)
                        pending, committed = [], time.monotonic()
                    if bar is not None and (done % 50 == 0 or done == len(todo)):
                        bar.update(done)
            store.put_many(pending)
    return {p: bad[p] for p in paths if p in bad}


class SkipRecorder:
    """Files the input pipeline met and could not use, recorded as they are met.

    ``skipped`` is shared with the ``LabelledData`` it belongs to, so the run's summary
    counts these files too. Once ``write_to`` names a file (the run's
    ``skipped_files.txt``), each new file is appended to it as a ``path<TAB>reason``
    line. The reason is found by checking the one file again (``check_image``), so it
    reads as the up-front check's would; bad files are rare, so this costs nothing.
    """

    def __init__(self, skipped: dict[str, str], max_pixels: int = DEFAULT_MAX_PIXELS):
        self.skipped = skipped
        self.max_pixels = max_pixels
        self.path: Path | None = None
        self._lock = threading.Lock()

    def write_to(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def record(self, path: str, reason: str | None = None) -> None:
        """Note ``path`` as skipped (once), with ``reason`` or the reason a check finds."""
        if path in self.skipped:
            return
        reason = reason or check_image(path, self.max_pixels) or "not a readable image (decoding failed)"
        with self._lock:
            if path in self.skipped:
                return
            self.skipped[path] = reason
            if self.path is not None:
                try:
                    with open(self.path, "a", encoding="utf-8") as f:
                        f.write(f"{path}\t{reason}\n")
                except OSError:
                    pass  # the run's summary still counts it

    def callback(self, log=print):
        """A Keras callback that says at each epoch's end how many files were skipped so far."""
        import keras

        recorder = self

        class SkippedFiles(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                # A checked pipeline's length is unknown until its first epoch ends (bad files are
                # left out), which Keras reports as running "out of data": noise without steps_per_epoch.
                warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)

            def on_epoch_end(self, epoch, logs=None):
                if recorder.skipped:
                    where = f"; listed in {recorder.path}" if recorder.path else ""
                    log(
                        f"Epoch {epoch + 1}: {len(recorder.skipped)} file(s) skipped so far "
                        f"(unreadable, or over --max-pixels){where}."
                    )

        return SkippedFiles()
