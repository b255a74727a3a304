"""Issue 25's third hardening round: corrupt caches and files, odd names, spreadsheet cells, portability."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np

from kerasimg.training import feature_cache
from kerasimg.training.feature_cache import extract


def test_kerasimg_imports_where_there_is_no_fcntl():
    """Windows has no ``fcntl``: the package, its run locks and the zoo must import without it."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import kerasimg, kerasimg.locks, kerasimg.serving.zoo\n"
        "print('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout


def _extract_tiny(cache_dir, lines):
    """A two-view cache of a 3 -> 5 Dense layer over 6 examples, through ``feature_cache.extract``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    batches = [([x[:4], -x[:4]], np.arange(4)), ([x[4:], -x[4:]], np.arange(4, 6))]
    return extract(
        model, batches, split=None, count=6, cache_dir=cache_dir, name="train",
        identity={"views": ["a", "b"]}, log=lines.append,
    )  # fmt: skip


def _only_cache(cache_dir):
    (path,) = [p for p in cache_dir.glob("train-*.npy") if not p.name.endswith(".labels.npy")]
    return path


def test_a_cache_whose_values_were_overwritten_is_extracted_again(tmp_path):
    fresh = np.array(_extract_tiny(tmp_path, []).array)
    path = _only_cache(tmp_path)
    garbage = np.lib.format.open_memmap(path, "r+")  # the header kept, the values replaced
    garbage[:] = 123.0
    garbage.flush()
    del garbage
    lines = []
    cached = _extract_tiny(tmp_path, lines)
    assert any("does not match its checksum" in line and "extracting it again" in line for line in lines)
    np.testing.assert_array_equal(cached.array, fresh)


def test_a_truncated_cache_is_extracted_again_without_a_traceback(tmp_path):
    fresh = np.array(_extract_tiny(tmp_path, []).array)
    path = _only_cache(tmp_path)
    path.write_bytes(path.read_bytes()[:-40])
    lines = []
    np.testing.assert_array_equal(_extract_tiny(tmp_path, lines).array, fresh)
    assert any("is truncated or changed" in line for line in lines), lines


def test_non_finite_values_are_caught_where_the_sampled_checksum_looks_away(tmp_path, monkeypatch):
    # A large cache is checksummed by sampled blocks: make this one "large" with blocks that miss row 3.
    monkeypatch.setattr(feature_cache, "_FULL_CHECKSUM_BYTES", 0)
    monkeypatch.setattr(feature_cache, "_BLOCK_BYTES", 16)
    monkeypatch.setattr(feature_cache, "_SAMPLED_BLOCKS", 2)
    fresh = np.array(_extract_tiny(tmp_path, []).array)
    array = np.lib.format.open_memmap(_only_cache(tmp_path), "r+")
    array[3] = np.nan
    array.flush()
    del array
    lines = []
    np.testing.assert_array_equal(_extract_tiny(tmp_path, lines).array, fresh)
    assert any("holds non-finite values" in line for line in lines), lines


def test_a_cache_without_a_checksum_record_is_not_trusted(tmp_path):
    _extract_tiny(tmp_path, [])
    (meta_path,) = tmp_path.glob("train-*.json")
    meta = json.loads(meta_path.read_text())
    del meta["files"]  # what kerasimg wrote before caches carried a record
    meta_path.write_text(json.dumps(meta))
    lines = []
    _extract_tiny(tmp_path, lines)
    assert any("has no checksum" in line for line in lines), lines
    assert "files" in json.loads(meta_path.read_text())


def test_temporary_files_of_a_killed_extraction_are_removed(tmp_path):
    leftovers = [tmp_path / ".train-0123abcd.npy.k3j9x1.npy", tmp_path / ".train-0123abcd.json.a8f0q2.json"]
    for path in leftovers:
        path.write_bytes(b"\x93NUMPY half-written")
    kept = tmp_path / ".keep-me"
    kept.write_text("not ours")
    lines = []
    _extract_tiny(tmp_path, lines)
    assert not any(path.exists() for path in leftovers)
    assert kept.exists()
    assert sum("left in" in line for line in lines) == 2
