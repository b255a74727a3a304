"""Hardening, third round: damaged caches, control characters in names, CSV cells and corrupt files
each fail safe with one line."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from kerasimg.training import feature_cache


def _cache_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="ones")(inputs))


def _batches():
    rng = np.random.default_rng(0)
    for _ in range(3):
        yield [rng.normal(size=(4, 4)).astype("float32")], np.arange(4) % 2


def _extract(cache_dir, lines):
    return feature_cache.extract(
        _cache_model(),
        _batches(),
        split="tiny-split",
        count=12,
        cache_dir=cache_dir,
        name="train",
        identity={"views": ["plain"]},
        log=lines.append,
    )


@pytest.fixture
def cached(tmp_path):
    """A complete cache: (its folder, the .npy path, its values)."""
    fresh = _extract(tmp_path / "features", [])
    [path] = (tmp_path / "features").glob("train-*[0-9a-f].npy")
    return tmp_path / "features", path, np.array(fresh.array)


def test_a_cache_overwritten_under_its_header_is_extracted_again(cached):
    cache_dir, path, values = cached
    header = len(path.read_bytes()) - values.nbytes
    data = bytearray(path.read_bytes())
    data[header:] = np.full(values.shape, 0.5, values.dtype).tobytes()
    path.write_bytes(bytes(data))
    lines = []
    again = _extract(cache_dir, lines)
    assert any("damaged" in line and "checksum" in line and "extracting them again" in line for line in lines)
    np.testing.assert_array_equal(np.asarray(again.array), values)


@pytest.mark.parametrize("damage", ["truncate", "nan"])
def test_a_truncated_or_non_finite_cache_is_extracted_again(cached, damage):
    cache_dir, path, values = cached
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-20])
    else:  # NaN written with a matching manifest: only the values say the cache is bad
        bad = values.copy()
        bad[0, 0, 0] = np.nan
        np.save(path, bad)
        manifest = next(cache_dir.glob("train-*.json"))
        recorded = json.loads(manifest.read_text())
        recorded["files"][".npy"] = feature_cache.describe(path)
        manifest.write_text(json.dumps(recorded))
    lines = []
    again = _extract(cache_dir, lines)
    expected = "bytes" if damage == "truncate" else "NaN or infinite"
    assert sum("extracting them again" in line for line in lines) == 1
    assert expected in next(line for line in lines if "damaged" in line)
    np.testing.assert_array_equal(np.asarray(again.array), values)


def test_a_cache_reused_intact_is_not_extracted_again(cached):
    cache_dir, _, values = cached
    lines = []
    again = _extract(cache_dir, lines)
    assert lines == []
    np.testing.assert_array_equal(np.asarray(again.array), values)


def test_temporary_files_of_a_killed_extraction_are_removed(cached, tmp_path):
    cache_dir, path, _ = cached
    leftovers = [cache_dir / f".{path.name}.k1ll3d.npy", cache_dir / ".train-0123.labels.npy.abcd.npy"]
    kept = [cache_dir / ".val-0123.npy.abcd.npy", cache_dir / "notes.npy", tmp_path / ".train-x.npy.y.npy"]
    for file in leftovers + kept:
        file.write_bytes(b"partial")
    _extract(cache_dir, [])
    assert [f.exists() for f in leftovers] == [False, False]
    assert all(f.exists() for f in kept)
