"""Data at scale: files checked as the pipeline reads them (--verify pipeline), the default of fit."""

from __future__ import annotations

import json

import numpy as np
from helpers import bomb_png, make_class_tree, tiny_config

from kerasimg.data import FileSplit, image_dataset, load_folder
from kerasimg.data.verify import SkipRecorder
from kerasimg.training import fit


def _spoil(root):
    """A truncated JPEG and a PNG header claiming 20000x20000 pixels among good files; returns them."""
    truncated, bomb = root / "a" / "truncated.jpg", root / "b" / "bomb.png"
    truncated.write_bytes((root / "a" / "0.jpg").read_bytes()[:300])
    bomb.write_bytes(bomb_png(20000, 20000))
    return str(truncated), str(bomb)


def test_the_pipeline_skips_and_records_bad_files_as_it_meets_them(tmp_path):
    root = make_class_tree(tmp_path / "data", {"a": 3, "b": 3})
    truncated, bomb = _spoil(root)
    gone = root / "b" / "deleted-after-listing.jpg"
    paths = sorted(str(p) for p in root.rglob("*.*")) + [str(gone)]
    labels = [0 if "/a/" in p else 1 for p in paths]
    skipped = {}
    recorder = SkipRecorder(skipped)
    recorder.write_to(tmp_path / "skipped_files.txt")
    split = FileSplit(paths, labels, skips=recorder)
    batches = list(image_dataset(split, 32, 4, training=False))
    seen = np.concatenate([y.numpy() for _, y in batches])
    good = [y for p, y in zip(paths, labels) if p not in (truncated, bomb, str(gone))]
    assert seen.tolist() == good, "the good files, in order"
    assert batches[0][0].shape[1:] == (32, 32, 3)
    assert sorted(skipped) == sorted([truncated, bomb, str(gone)])
    assert skipped[bomb].startswith("too large: 20000x20000")
    assert skipped[truncated].startswith("not a readable image")
    assert skipped[str(gone)].startswith("cannot read file")
    lines = (tmp_path / "skipped_files.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(skipped)
    # A second epoch meets them again but records each once.
    list(image_dataset(split, 32, 4, training=True))
    assert len((tmp_path / "skipped_files.txt").read_text().splitlines()) == 3


def test_pipeline_checking_splits_exactly_as_the_full_check(tmp_path):
    make_class_tree(tmp_path, {"a": 7, "b": 5, "c": 4})
    full = load_folder(tmp_path, val_split=0.2, test_split=0.25, seed=4, verify="full")
    lazy = load_folder(tmp_path, val_split=0.2, test_split=0.25, seed=4, verify="pipeline")
    for name in ("train", "val", "test"):
        assert getattr(lazy, name) == getattr(full, name), name  # paths and labels (not the recorder)
        assert getattr(lazy, name).skips is lazy.recorder and getattr(full, name).skips is None


def test_a_fit_starts_without_checking_and_loses_no_test_image_unannounced(tmp_path):
    data = tmp_path / "data"
    train_bad = _spoil(make_class_tree(data / "train", {"a": 5, "b": 5}))
    make_class_tree(data / "test", {"a": 2, "b": 2}, seed=1)
    broken = data / "test" / "a" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    lines = []
    result = fit(tiny_config(data, tmp_path / "run", epochs=1), log=lines.append)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["arguments"]["verify"] == "pipeline"
    summary = config["data_summary"]
    assert summary["train"] + summary["val"] == 12 and summary["skipped"] == 0, "nothing checked up front"
    assert "Epoch 1: 2 file(s) skipped so far (unreadable, or over --max-pixels)" in "\n".join(lines)
    recorded = dict(
        line.split("\t") for line in (result.run_dir / "skipped_files.txt").read_text().splitlines()
    )
    assert sorted(recorded) == sorted([*train_bad, str(broken)])
    assert result.metrics["test_examples"] == 4
    assert result.metrics["test_skipped"] == 1 and result.metrics["skipped_files"] == 3


def test_the_feature_cache_holds_only_the_files_the_pipeline_kept(tmp_path):
    import keras

    from kerasimg.training import feature_cache

    root = make_class_tree(tmp_path / "data", {"a": 3, "b": 3})
    truncated, bomb = _spoil(root)
    paths = sorted(str(p) for p in root.rglob("*.*"))
    labels = [0 if "/a/" in p else 1 for p in paths]
    split = FileSplit(paths, labels, skips=SkipRecorder({}))
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    cached = feature_cache.extract(
        model,
        feature_cache.image_views(split, 32, 4, ("plain",), "none", 0),
        split=split,
        count=len(split),
        cache_dir=tmp_path / "cache",
        name="train",
        identity={"views": ["plain"]},
        log=lambda *_: None,
    )
    kept = [y for p, y in zip(paths, labels) if p not in (truncated, bomb)]
    assert cached.array.shape == (len(kept), 1, 3) and cached.labels.tolist() == kept
    assert sorted(split.skips.skipped) == sorted([truncated, bomb])


def test_the_benchmark_reports_a_fit_and_the_store(tmp_path):
    from kerasimg.benchmarks import data_scale

    fit_json, store_json = tmp_path / "fit.json", tmp_path / "store.json"
    common = ["--files", "50", "--work", str(tmp_path / "work")]
    # One run keeps the test cheap: packed is the cold run's code on a pack of the same files (a warm
    # run is the same code with the store the cold one left).
    assert data_scale.main([*common, "--epochs", "1", "--runs", "packed", "--json", str(fit_json)]) == 0
    assert data_scale.main([*common, "--mode", "store", "--json", str(store_json)]) == 0
    rows = json.loads(fit_json.read_text())
    assert [(r["files"], r["run"], r["verify"]) for r in rows] == [(50, "packed", "pipeline")]
    assert rows[0]["pack_seconds"] > 0
    for row in rows:
        assert 0 < row["first_step_seconds"] < row["total_seconds"] and len(row["epoch_seconds"]) == 1
        assert row["peak_rss_mb"] > 100 and row["skipped_files"] == 0
    # 50 files in 10 classes: 15% of each class's 5 (one) held out as test, by the pack as by fit.
    assert rows[0]["test_examples"] == 10
    (store,) = json.loads(store_json.read_text())
    assert store["files"] == store["found"] == 50
    for key in ("listing_seconds", "key_seconds", "store_write_seconds", "store_lookup_seconds"):
        assert store[key] >= 0


def test_checking_the_test_split_keeps_it_the_validation_split(tmp_path):
    make_class_tree(tmp_path / "train", {"a": 3, "b": 3})
    make_class_tree(tmp_path / "test", {"a": 2, "b": 2}, seed=1)
    broken = tmp_path / "test" / "b" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = load_folder(tmp_path, val_from="test", verify="pipeline")
    assert str(broken) in data.test.paths and data.check_split("test") == 1
    assert data.val is data.test, "a run validated on its test split still says so in metrics.json"
    assert str(broken) not in data.test.paths and len(data.test) == 4
    assert list(data.skipped) == [str(broken)] and data.check_split("test") == 0


def test_verdict_stores_in_several_threads_write_at_once(tmp_path):
    import threading

    from kerasimg.data.verify import VerdictStore

    path = tmp_path / "store.sqlite"

    def write(worker):
        with VerdictStore(path) as store:
            for start in range(0, 600, 50):
                store.put_many((f"/{worker}/{i}|1|1", "ok:1,1") for i in range(start, start + 50))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with VerdictStore(path) as store:
        assert len(store) == 2400


def test_a_training_batch_of_only_bad_files_is_never_empty(tmp_path):
    root = make_class_tree(tmp_path / "data", {"a": 2, "b": 2})
    bad = [root / "a" / f"bad{i}.jpg" for i in range(2)]
    for path in bad:
        path.write_bytes(b"junk")
    good = sorted(str(p) for p in root.rglob("[0-9].jpg"))
    paths, labels = [str(bad[0]), *good, str(bad[1])], [0, 0, 0, 1, 1, 0]
    split = FileSplit(paths, labels, skips=SkipRecorder({}))
    ds = image_dataset(split, 32, 1, training=True, augment="none", seed=0)
    # Known length (Keras runs it step for step as an unchecked split), and no empty batch, which
    # would turn BatchNorm's statistics into NaN.
    assert int(ds.cardinality()) == len(paths)
    assert [int(y.shape[0]) for _, y in ds] == [1] * len(paths)
    assert sorted(split.skips.skipped) == sorted(map(str, bad))
