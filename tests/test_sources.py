"""Resolving --data: layouts, splits, bad files and the errors users see."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import make_class_tree, write_image

from kerasimg.data import load_data, load_folder, sources, stratified_split
from kerasimg.data.splits import FileSplit
from kerasimg.errors import UserError


def make_intel_tree(root, double_nesting=True, classes=("forest", "sea", "street"), train=5, test=2):
    for split, count in (("seg_train", train), ("seg_test", test)):
        base = root / split / split if double_nesting else root / split
        make_class_tree(base, dict.fromkeys(classes, count), seed=len(split))
    rng = np.random.default_rng(1)
    pred = root / "seg_pred" / "seg_pred" if double_nesting else root / "seg_pred"
    for i in range(3):
        write_image(pred / f"{i}.jpg", rng)
    return root


@pytest.mark.parametrize("double_nesting", [True, False])
def test_intel_layout_is_detected_with_its_test_and_pred_splits(tmp_path, double_nesting):
    make_intel_tree(tmp_path, double_nesting)
    data = load_folder(tmp_path, val_split=0.2, seed=0)
    assert data.class_names == ["forest", "sea", "street"]
    assert "intel" in data.source
    assert len(data.test) == 6 and all("seg_test" in p for p in data.test.paths)
    assert len(data.train) + len(data.val) == 15
    assert data.val.class_counts(3) == [1, 1, 1]
    assert len(data.unlabelled) == 3


def test_no_file_is_in_two_splits_and_every_file_is_in_one(tmp_path):
    make_class_tree(tmp_path, {"a": 20, "b": 12, "c": 9})
    data = load_folder(tmp_path, val_split=0.2, test_split=0.2, seed=3)
    splits = [set(data.train.paths), set(data.val.paths), set(data.test.paths)]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert len(set.union(*splits)) == 41
    assert any("holding out" in note for note in data.notes)


def test_splits_are_stratified_and_seeded():
    split = FileSplit([f"{c}/{i}.jpg" for c in "ab" for i in range(30)], [0] * 30 + [1] * 30)
    rest, carved = stratified_split(split, 0.2, seed=7)
    assert carved.class_counts(2) == [6, 6] and rest.class_counts(2) == [24, 24]
    assert stratified_split(split, 0.2, seed=7)[1].paths == carved.paths
    assert stratified_split(split, 0.2, seed=8)[1].paths != carved.paths


def test_val_from_test_reuses_the_test_split(tmp_path):
    make_intel_tree(tmp_path)
    data = load_folder(tmp_path, val_from="test")
    assert data.val is data.test and len(data.train) == 15


def test_train_test_folders_are_used_as_given(tmp_path):
    make_class_tree(tmp_path / "train", {"x": 4, "y": 4})
    make_class_tree(tmp_path / "test", {"x": 2, "y": 2}, seed=1)
    data = load_folder(tmp_path, val_split=0.25)
    assert len(data.test) == 4 and len(data.train) == 6 and len(data.val) == 2


def test_bad_files_are_skipped_listed_and_hidden_files_ignored(tmp_path):
    make_class_tree(tmp_path, {"a": 6, "b": 6})
    (tmp_path / "a" / "zero.jpg").write_bytes(b"")
    (tmp_path / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "b" / "._0.jpg").write_bytes(b"\x00\x05")
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"\x00")
    data = load_folder(tmp_path, val_split=0.2, test_split=0.2)
    assert sorted(p.rsplit("/", 1)[-1] for p in data.skipped) == ["corrupt.jpg", "notes.txt", "zero.jpg"]
    assert "0 bytes" in data.skipped[str(tmp_path / "a" / "zero.jpg")]
    every = data.train.paths + data.val.paths + data.test.paths
    assert len(every) == 12 and not any(p in data.skipped for p in every)
    assert not any("/." in p or "Thumbs" in p for p in every)


def test_verdicts_are_cached_so_a_second_check_decodes_nothing(tmp_path, monkeypatch):
    make_class_tree(tmp_path, {"a": 3, "b": 3})
    load_folder(tmp_path, val_split=0.3, test_split=0.3)
    import kerasimg.data.verify as verify

    def fail(path):
        raise AssertionError(f"{path} was decoded again")

    monkeypatch.setattr(verify, "check_image", fail)
    load_folder(tmp_path, val_split=0.3, test_split=0.3)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"does not exist.*Received: data='.*nowhere'"):
        load_data(str(tmp_path / "nowhere"))


def test_class_missing_from_test_is_named(tmp_path):
    make_class_tree(tmp_path / "seg_train" / "seg_train", {"forest": 3, "sea": 3, "street": 3})
    make_class_tree(tmp_path / "seg_test" / "seg_test", {"forest": 2, "sea": 2})
    with pytest.raises(UserError, match="class 'street' missing from .*seg_test"):
        load_folder(tmp_path)


def test_empty_class_is_a_clear_error(tmp_path):
    make_class_tree(tmp_path, {"a": 4, "b": 4})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"Class folder .*/c has no readable images"):
        load_folder(tmp_path)


def test_a_folder_without_class_subfolders_is_a_clear_error(tmp_path):
    write_image(tmp_path / "lonely.jpg", np.random.default_rng(0))
    with pytest.raises(UserError, match="No class subfolders"):
        load_folder(tmp_path)


def test_tfds_names_load_through_tfds(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from kerasimg.data import image_dataset

    with tfds.testing.mock_data(num_examples=40):
        data = load_data("tfds:cifar10", val_split=0.25, test_split=0.2, seed=0)
        # The names are TFDS's label names in TFDS's order. Without the prepared data (as here, and
        # under mock_data) cifar10's ClassLabel only knows num_classes=10, so they are "0".."9".
        names = tfds.builder("cifar10").info.features["label"].names
        assert len(names) == 10 and data.class_names == names
        counts = {}
        for name in ("train", "val", "test"):
            batches = list(image_dataset(getattr(data, name), 32, 8, training=False))
            counts[name] = sum(int(x.shape[0]) for x, _ in batches)
            assert all(x.shape[1:] == (32, 32, 3) for x, _ in batches)
        # mock_data has no test split to offer, so one is carved: together they are the 40 examples.
        assert sum(counts.values()) == 40 and min(counts.values()) > 0


def test_unknown_tfds_name_is_a_clear_error():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(UserError, match="TFDS does not know this dataset.*tfds:no_such_dataset_xyz"):
        load_data("tfds:no_such_dataset_xyz")


def _walk_listing(folder):
    """The listing before os.scandir: os.walk, sorted, hidden names left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not sources.is_hidden(d))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if not sources.is_hidden(f)]
    return found


def test_scandir_listing_equals_the_walk_listing(tmp_path):
    root = tmp_path / "cls"
    for relative in ("b.jpg", "a.jpg", "z/1.jpg", "z/deeper/2.jpg", "m/3.jpg", ".hidden/4.jpg", "._5.jpg"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")
    (root / "Thumbs.db").write_bytes(b"x")
    outside = tmp_path / "outside"
    (outside / "6.jpg").parent.mkdir()
    (outside / "6.jpg").write_bytes(b"x")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)  # listed by neither: not walked
    (root / "linked-file.jpg").symlink_to(outside / "6.jpg")
    (root / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    listed = sources.list_files(root)
    assert listed == _walk_listing(root)
    assert [os.path.relpath(p, root) for p in listed] == [
        "a.jpg",
        "b.jpg",
        "dangling.jpg",
        "linked-file.jpg",
        "m/3.jpg",
        "z/1.jpg",
        "z/deeper/2.jpg",
    ]


def test_a_long_listing_reports_progress(tmp_path, monkeypatch):
    make_class_tree(tmp_path, {"a": 4, "b": 3})
    monkeypatch.setattr(sources, "LISTING_PROGRESS_EVERY", 3)
    lines = []
    load_folder(tmp_path, verify=False, log=lines.append)
    assert [line.split(": ")[1] for line in lines if line.startswith("Listing")] == [
        "3 files so far...",
        "6 files so far...",
    ]
