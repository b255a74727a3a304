"""A packed copy of a data set: sharded TFRecord files and the manifest that describes them.

``python -m kerasimg.pack DATA --out DIR`` resolves ``DATA`` exactly as ``fit --data DATA``
does (the same listing, class order and seeded, stratified splits) and writes each split's
images, as the bytes read from disk, into ``DIR/<split>-<index>.<pack id>.tfrecord`` shards
of standard ``tf.train.Example`` records:

* ``image/encoded``: the image file's bytes,
* ``image/class/label``: the class index (into the manifest's ``class_names``),
* ``image/split``: ``train``, ``val`` or ``test``,
* ``image/filename``: the file's path relative to the data folder.

``DIR/manifest.json`` holds the format version, the class names, the settings that carved
the splits, per-split and per-class counts, each shard's record count and SHA-256, the
files left out because they could not be decoded, and the data source. ``fit --data DIR``
finds the manifest and reads the shards instead of the files (``load_packed``): each
shard's checksum is checked first (and remembered in the verdict store, keyed by the
shard's path, size and modification time), then the shards are read in parallel with
``tf.data``'s interleave and decoded as the files would have been.

``Pack`` is the one class that knows the folder's file names.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasimg.data.labelled import LabelledData
from kerasimg.data.splits import TEST_SPLIT
from kerasimg.errors import ArgumentError, UserError
from kerasimg.progress import progress_bar

FORMAT = "kerasimg-pack"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_SHARD_MB = 128.0  # TensorFlow's guide suggests shards of 100 MB or more, read several at once
# Shards read at once (interleave's cycle) and encoded records a training split shuffles among
# (shards hold their records in a seeded random order already, and their order is reshuffled each epoch).
READ_SHARDS = 8
SHUFFLE_RECORDS = 1024
# Below this many images a progress bar is more noise than help (as verify's).
PROGRESS_MIN_FILES = 200
_PROGRESS_MIN_SHARDS = 8  # about a gigabyte to hash at the default shard size

SHARD_SUFFIX = ".tfrecord"
IMAGE, LABEL, SPLIT, FILENAME = "image/encoded", "image/class/label", "image/split", "image/filename"


class Pack:
    """The layout of a packed folder: ``manifest.json``, the shards it lists, ``.lock``."""

    MANIFEST = "manifest.json"
    LOCK = ".lock"
    TEMP_PREFIX = ".packing-"  # a pack being written; renamed away when done

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    def shard_path(self, name: str) -> Path:
        return self.path / name

    @staticmethod
    def shard_name(split: str, index: int, pack_id: str) -> str:
        # The pack id keeps a new pack's shards from replacing the old pack's before its manifest does.
        return f"{split}-{index:05d}.{pack_id}{SHARD_SUFFIX}"

    def read_manifest(self) -> dict | None:
        """The manifest, or ``None`` when the folder holds no kerasimg pack."""
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None

    @property
    def exists(self) -> bool:
        return self.read_manifest() is not None

    def foreign_files(self) -> list[str]:
        """Names in the folder that are neither our lock nor an unfinished pack's temporary folder."""
        if not self.path.is_dir():
            return []
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.name != self.LOCK and not p.name.startswith(self.TEMP_PREFIX)
        )

    def lock(self):
        from kerasimg.locks import exclusive

        return exclusive(self.lock_path, f"The pack folder {self.path}")


def is_packed(data: str) -> bool:
    """Whether ``data`` names a folder ``kerasimg.pack`` wrote (it holds a kerasimg manifest)."""
    if data == "scenes" or data.startswith(("scenes:", "tfds:")):
        return False
    return Pack(data).exists


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PackedSplit:
    """One split of a pack: its shards, in the manifest's order, and its counts.

    ``encoded`` gives ``(bytes, label)`` for ``image_dataset`` to decode as it decodes a
    file's bytes; ``images`` the decoded images, and ``names`` the file names and labels,
    in the order evaluation reads them.
    """

    folder: str
    split: str
    shards: tuple[str, ...]
    count: int
    counts: tuple[int, ...]
    checksum: str  # over the shards' SHA-256: what the feature cache keys on
    skipped: int = 0  # files of this split left out when it was packed (they could not be decoded)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"PackedSplit({self.folder!r}, {self.split!r}, sha256={self.checksum})"

    def class_counts(self, num_classes: int) -> list[int]:
        return list(self.counts)

    def _records(self, training: bool = False, seed: int = 0):
        import tensorflow as tf

        files = tf.data.Dataset.from_tensor_slices([str(Path(self.folder) / s) for s in self.shards])
        if training:
            files = files.shuffle(len(self.shards), seed=seed, reshuffle_each_iteration=True)
        # Deterministic: evaluation reads the records in one order, which ``names`` repeats.
        records = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(self.shards), READ_SHARDS),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if training:
            records = records.shuffle(
                min(self.count, SHUFFLE_RECORDS), seed=seed, reshuffle_each_iteration=True
            )
        # The manifest's count: Keras knows the steps per epoch, and a shard that lost records fails loudly.
        return records.apply(tf.data.experimental.assert_cardinality(self.count))

    def encoded(self, *, training: bool = False, seed: int = 0):
        """``(encoded image bytes, int32 label)``; shuffled (seeded, each epoch) when ``training``."""
        import tensorflow as tf

        features = {IMAGE: tf.io.FixedLenFeature([], tf.string), LABEL: tf.io.FixedLenFeature([], tf.int64)}

        def parse(record):
            example = tf.io.parse_single_example(record, features)
            return example[IMAGE], tf.cast(example[LABEL], tf.int32)

        return self._records(training, seed).map(parse, num_parallel_calls=tf.data.AUTOTUNE)

    def images(self):
        """``(uint8 RGB image, label)`` in evaluation order, decoded as a file's bytes are."""
        import tensorflow as tf

        from kerasimg.data.decode import decode_rgb

        return self.encoded().map(
            lambda contents, y: (decode_rgb(contents), y), num_parallel_calls=tf.data.AUTOTUNE
        )

    def names(self) -> tuple[list[str], np.ndarray]:
        """``(file names, labels)`` in the order ``encoded()`` gives the images, without decoding any."""
        import tensorflow as tf

        features = {
            FILENAME: tf.io.FixedLenFeature([], tf.string),
            LABEL: tf.io.FixedLenFeature([], tf.int64),
        }
        files, labels = [], []
        for batch in self._records().batch(1024).map(lambda r: tf.io.parse_example(r, features)):
            files.extend(name.decode() for name in batch[FILENAME].numpy())
            labels.extend(batch[LABEL].numpy().tolist())
        return files, np.asarray(labels, np.int64)


def load_packed(
    data: str,
    *,
    val_split: float = 0.1,
    val_from: str = "train",
    test_split: float = TEST_SPLIT,
    seed: int = 0,
    log=print,
) -> LabelledData:
    """The splits of the pack in folder ``data``, after checking every shard's SHA-256.

    The splits are the pack's: the settings that carved them (``seed``, ``val_split``,
    ``val_from``, ``test_split``) must be the ones given, or this refuses naming the
    setting, since a fit on the folder would have carved other splits.
    """
    pack = Pack(data)
    manifest = pack.read_manifest()
    if manifest is None:
        raise UserError(f"{pack.path} holds no kerasimg pack ({Pack.MANIFEST}). Received: data={data!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"The pack in {pack.path} has format version {manifest.get('version')!r}; this kerasimg reads "
            f"version {FORMAT_VERSION}. Pack the data again with this kerasimg (python -m kerasimg.pack)."
        )
    _check_settings(
        pack, manifest, dict(val_split=val_split, val_from=val_from, test_split=test_split, seed=seed)
    )
    check_shards(pack, manifest, log=log)
    skipped_by_split: dict[str, int] = {}
    for entry in manifest["skipped"]:
        skipped_by_split[entry["split"]] = skipped_by_split.get(entry["split"], 0) + 1
    splits = {}
    for name, info in manifest["splits"].items():
        shard_sums = "".join(s["sha256"] for s in info["shards"])
        splits[name] = PackedSplit(
            folder=str(pack.path.resolve()),
            split=name,
            shards=tuple(s["file"] for s in info["shards"]),
            count=int(info["count"]),
            counts=tuple(info["class_counts"]),
            checksum=hashlib.sha256(shard_sums.encode()).hexdigest()[:16],
            skipped=skipped_by_split.get(name, 0),
        )
    val = splits["test"] if manifest["val_is_test"] else splits["val"]
    notes = [f"Reading the packed copy {pack.path} of {manifest['source']}."]
    if manifest["val_is_test"]:
        notes.append("Validating on the test split (--val-from test), as the ported work did.")
    notes.extend(manifest.get("warnings", []))
    return LabelledData(
        name=pack.path.resolve().name,
        class_names=list(manifest["class_names"]),
        train=splits["train"],
        val=val,
        test=splits["test"],
        skipped={e["file"]: e["reason"] for e in manifest["skipped"]},
        notes=notes,
        source=f"{pack.path} (packed from {manifest['source']})",
        root=str(pack.path),
        carved=list(manifest["carved"]),
    )


def _check_settings(pack: Pack, manifest: dict, given: dict) -> None:
    """Refuse a setting that differs from the pack's where it shaped the pack's splits."""
    carved, used = manifest["carved"], manifest["settings"]
    relevant = ["seed"] if carved else []
    if "test" in carved:
        relevant.append("test_split")
    if "val" in carved:
        relevant += ["val_split", "val_from"]
    elif manifest["val_is_test"]:
        relevant.append("val_from")
    for name in relevant:
        if given[name] != used[name]:
            flag = "--" + name.replace("_", "-")
            raise ArgumentError(
                name,
                f"must be {used[name]!r} for the pack in {pack.path}, whose splits were carved with it "
                f"(pack the data again with {flag} {given[name]} for other splits)",
                given[name],
            )


def check_shards(pack: Pack, manifest: dict, log=print) -> None:
    """Every shard the manifest lists exists and has its SHA-256; one line naming the first that does not.

    A shard's verdict is kept in the verdict store, keyed by its path, size and
    modification time, so a pack is hashed once, not at every fit.
    """
    from kerasimg.data.duplicates import content_hash
    from kerasimg.data.verify import VerdictStore, file_key

    shards = [(s["file"], s["sha256"]) for info in manifest["splits"].values() for s in info["shards"]]
    keys = {}
    for name, _ in shards:
        key = file_key(str(pack.shard_path(name)))
        if key is None:
            raise UserError(
                f"The shard {pack.shard_path(name)} that {pack.manifest_path} lists is missing; copy the "
                "whole pack folder, or pack the data again (python -m kerasimg.pack)."
            )
        keys[name] = "sha256|" + key
    with VerdictStore() as store:
        known = store.get_many(list(keys.values()))
        todo = [(name, expected) for name, expected in shards if known.get(keys[name]) != expected]
        bar = None
        if len(todo) > 1:
            log(f"Checking the SHA-256 of {len(todo)} shards of {pack.path} (once; verdicts are kept)...")
            if len(todo) >= _PROGRESS_MIN_SHARDS:
                bar = progress_bar(len(todo), "shard")
        for done, (name, expected) in enumerate(todo, 1):
            actual = content_hash(pack.shard_path(name))
            if actual != expected:
                raise UserError(
                    f"The shard {pack.shard_path(name)} is corrupted: its SHA-256 is {actual[:16]}..., "
                    f"{pack.manifest_path} says {expected[:16]}.... Copy it again from the original pack, "
                    "or pack the data again (python -m kerasimg.pack)."
                )
            store.put_many([(keys[name], actual)])
            if bar is not None:
                bar.update(done)
