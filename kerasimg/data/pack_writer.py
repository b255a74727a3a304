"""Writing a pack (``python -m kerasimg.pack``): a data set's splits, as ``fit`` resolves them, into shards.

The format, and reading it back, are ``packed.py``'s; this module needs ``sources.load_data``
to resolve the splits, which itself reads packs, so the two directions live apart.
"""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.data.labelled import LabelledData
from kerasimg.data.packed import (
    DEFAULT_SHARD_MB,
    FILENAME,
    FORMAT,
    FORMAT_VERSION,
    IMAGE,
    LABEL,
    PROGRESS_MIN_FILES,
    SHARD_SUFFIX,
    SPLIT,
    Pack,
    is_packed,
)
from kerasimg.data.splits import TEST_SPLIT
from kerasimg.errors import ArgumentError, UserError
from kerasimg.files import inside, make_temp_dir, write_json
from kerasimg.progress import progress_bar


@dataclass
class PackResult:
    out: Path
    manifest: dict
    seconds: float

    @property
    def images(self) -> int:
        return sum(s["count"] for s in self.manifest["splits"].values())

    @property
    def shards(self) -> int:
        return sum(len(s["shards"]) for s in self.manifest["splits"].values())


def pack_data(
    data: str,
    *,
    out: str | os.PathLike,
    val_split: float = 0.1,
    val_from: str = "train",
    seed: int = 0,
    verify: str = "pipeline",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shard_mb: float = DEFAULT_SHARD_MB,
    force: bool = False,
    log=print,
) -> PackResult:
    """Write ``data``'s splits, as ``fit --data DATA`` with these settings resolves them, into ``out``.

    See the module docstring for the layout. Files that cannot be decoded (or exceed
    ``max_pixels``) are left out and listed in the manifest. The shards are written into
    a temporary folder inside ``out`` and moved into place; the new manifest then replaces
    the old one at once, and only after that are a previous pack's shards deleted. A
    folder that holds other files is refused unless ``force`` (its other files are left
    alone).
    """
    from kerasimg.data.sources import VAL_FROM, VERIFY, data_identity, load_data

    started = time.time()
    if not isinstance(shard_mb, (int, float)) or isinstance(shard_mb, bool) or not shard_mb > 0:
        raise ArgumentError("shard_mb", "must be a positive number of megabytes", shard_mb)
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise ArgumentError("out", "must be the path of the folder to write the pack into", out)
    if verify not in VERIFY:
        raise ArgumentError("verify", f"must be one of {', '.join(VERIFY)}", verify)
    if val_from not in VAL_FROM:
        raise ArgumentError("val_from", f"must be one of {', '.join(VAL_FROM)}", val_from)
    if data.startswith("tfds:"):
        raise UserError(
            f"pack takes a folder of images or scenes; a TFDS dataset is stored in record files already. "
            f"Received: data={data!r}"
        )
    if is_packed(data):
        raise UserError(f"{data} is a pack already; fit --data {data} reads it. Received: data={data!r}")
    pack = Pack(out)
    if pack.path.exists() and not pack.path.is_dir():
        raise UserError(f"The pack's folder is a file. Received: out={str(out)!r}")
    _check_out(pack, force)  # before the files are listed and checked, which may take long
    loaded = load_data(
        data, val_split=val_split, val_from=val_from, seed=seed, verify=verify, max_pixels=max_pixels, log=log
    )
    root = Path(loaded.root).resolve()
    target = pack.path.resolve()
    if target == root or root in target.parents:
        raise UserError(
            f"The pack's folder {target} is inside the data folder {root}, where it would be read as data; "
            f"choose an --out outside it. Received: out={str(out)!r}"
        )
    from kerasimg.data.duplicates import leakage_warning
    from kerasimg.data.verify import verify_images

    warnings = [leak] if (leak := leakage_warning(loaded.train, loaded.test)) else []
    for warning in warnings:
        log(warning)

    splits = {"train": loaded.train, "val": loaded.val, "test": loaded.test}
    val_is_test = loaded.val is loaded.test
    if val_is_test:
        del splits["val"]
    every = [p for split in splits.values() for p in split.paths if p not in loaded.skipped]
    bad = {**loaded.skipped, **verify_images(every, max_pixels=max_pixels, log=log)}

    pack.path.mkdir(parents=True, exist_ok=True)
    with pack.lock():
        previous = _check_out(pack, force)  # again: another process may have written there meanwhile
        for stale in pack.path.glob(Pack.TEMP_PREFIX + "*"):  # what a killed pack left behind
            shutil.rmtree(inside(pack.path, stale.name), ignore_errors=True)
        temp = make_temp_dir(pack.path, Pack.TEMP_PREFIX)
        moved: list[Path] = []
        try:
            manifest = _write_shards(temp, splits, loaded, bad, int(shard_mb * 2**20), seed, log)
            # With --verify full, bad files were dropped before the splits were carved: in none of them.
            listed, unlabelled = {e["file"] for e in manifest["skipped"]}, set(loaded.unlabelled)
            for path, reason in loaded.skipped.items():
                name = _relative(path, loaded.root)
                if name not in listed and path not in unlabelled:
                    manifest["skipped"].append({"file": name, "split": None, "reason": reason})
            manifest.update(
                data=data,
                data_identity=data_identity(data),
                source=loaded.source,
                settings=dict(
                    seed=seed,
                    val_split=val_split,
                    val_from=val_from,
                    test_split=TEST_SPLIT,  # load_data's, which fit does not change
                    verify=verify,
                    max_pixels=max_pixels,
                ),
                carved=list(loaded.carved),
                val_is_test=val_is_test,
                warnings=warnings,  # fit on the pack repeats them, as fit on the folder says them
            )
            for info in manifest["splits"].values():
                for shard in info["shards"]:
                    destination = pack.shard_path(shard["file"])
                    os.replace(temp / shard["file"], destination)
                    moved.append(destination)
            write_json(pack.manifest_path, manifest)  # the moment the new pack replaces the old one
            moved = []
        finally:
            for path in moved:  # the new pack did not happen: its shards go, the old pack stays whole
                path.unlink(missing_ok=True)
            shutil.rmtree(temp, ignore_errors=True)
        if previous is not None:
            kept = {s["file"] for info in manifest["splits"].values() for s in info["shards"]}
            for info in previous.get("splits", {}).values():
                for shard in info.get("shards", []):
                    name = shard.get("file")
                    if isinstance(name, str) and name.endswith(SHARD_SUFFIX) and name not in kept:
                        _remove_inside(pack.path, name)
    return PackResult(pack.path, manifest, time.time() - started)


def _check_out(pack: Pack, force: bool) -> dict | None:
    """The earlier pack's manifest in ``pack``, if any; other files are refused unless ``force``."""
    previous = pack.read_manifest()
    foreign = pack.foreign_files()
    if previous is None and foreign and not force:
        raise UserError(
            f"{pack.path} holds files that are not a kerasimg pack ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out, or pass --force to "
            "write the pack beside them."
        )
    return previous


class _ShardWriter:
    """Records of one split into shards of about ``limit`` bytes; ``shards`` lists the closed ones."""

    def __init__(self, folder: Path, split: str, pack_id: str, limit: int):
        self.folder, self.split, self.pack_id, self.limit = folder, split, pack_id, limit
        self.shards: list[dict] = []
        self._writer, self._current, self._written = None, None, 0

    def write(self, record: bytes) -> None:
        import tensorflow as tf

        if self._writer is None:
            name = Pack.shard_name(self.split, len(self.shards), self.pack_id)
            self._current, self._written = {"file": name, "count": 0}, 0
            self._writer = tf.io.TFRecordWriter(str(self.folder / name))
        self._writer.write(record)
        self._written += len(record)
        self._current["count"] += 1
        if self._written >= self.limit:
            self.close()

    def close(self) -> None:
        from kerasimg.data.duplicates import content_hash

        if self._writer is None:
            return
        self._writer.close()
        path = self.folder / self._current["file"]
        self._current.update(bytes=path.stat().st_size, sha256=content_hash(path))
        self.shards.append(self._current)
        self._writer = None


def _relative(path: str, root: str) -> str:
    """``path`` relative to the data folder, with ``/`` on every system (a record's file name)."""
    return Path(os.path.relpath(path, root)).as_posix() if root else path


def _remove_inside(folder: Path, name: str) -> None:
    """Delete the file ``folder/name``; a name that leads outside ``folder`` (an edited manifest) is left."""
    try:
        old = inside(folder, name)
    except UserError:
        return
    if old.is_file():
        old.unlink()


def _write_shards(
    folder: Path, splits: dict, loaded: LabelledData, bad: dict[str, str], shard_bytes: int, seed: int, log
) -> dict:
    """Write each split's readable files into shards under ``folder``; return the manifest so far."""

    import kerasimg

    pack_id = secrets.token_hex(4)
    total = sum(len(s) for s in splits.values())
    bar = None
    if total >= PROGRESS_MIN_FILES:
        log(f"Packing {total:,} images into shards of up to {shard_bytes / 2**20:g} MB...")
        bar = progress_bar(total, "image")
    rng = np.random.default_rng(seed)
    done = 0
    manifest_splits, skipped = {}, []
    for split_name, split in splits.items():
        writer = _ShardWriter(folder, split_name, pack_id, shard_bytes)
        counts = [0] * loaded.num_classes
        # A seeded random order: each shard holds a mix of classes, so reading a few shards at once
        # and shuffling a small buffer trains as a shuffle of the whole split would.
        for i in rng.permutation(len(split)).tolist():
            path, label = split.paths[i], int(split.labels[i])
            name = _relative(path, loaded.root)
            if path in bad:
                skipped.append({"file": name, "split": split_name, "reason": bad[path]})
            else:
                with open(path, "rb") as f:
                    writer.write(_example(f.read(), label, split_name, name))
                counts[label] += 1
            done += 1
            if bar is not None and (done % 50 == 0 or done == total):
                bar.update(done)
        writer.close()
        if not writer.shards:
            raise UserError(f"No file of the {split_name} split could be read as an image; nothing to pack.")
        manifest_splits[split_name] = {"count": sum(counts), "class_counts": counts, "shards": writer.shards}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "kerasimg": kerasimg.__version__,
        "class_names": loaded.class_names,
        "images": sum(s["count"] for s in manifest_splits.values()),
        "splits": manifest_splits,
        "skipped": skipped,
        "features": {
            IMAGE: "the image file's bytes, as read from disk",
            LABEL: "int64 index into class_names",
            SPLIT: "train, val or test",
            FILENAME: "the file's path relative to the data folder",
        },
    }


def _example(contents: bytes, label: int, split: str, name: str) -> bytes:
    import tensorflow as tf

    def data(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        IMAGE: data(contents),
        LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        SPLIT: data(split.encode()),
        FILENAME: data(name.encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


__all__ = ["PackResult", "pack_data"]
