"""``kerasimg pack``: a data set's splits in sharded TFRecord files, and ``fit --data DIR`` on them."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import make_class_tree, tiny_config

from kerasimg.data import load_data
from kerasimg.data.decode import decode_rgb
from kerasimg.data.pack_writer import pack_data
from kerasimg.data.packed import Pack, PackedSplit
from kerasimg.errors import ArgumentError, UserError


@pytest.fixture(scope="module")
def packed_scenes(tiny_scenes, tmp_path_factory) -> Path:
    """tiny_scenes packed with fit's defaults, into shards small enough that each split has several."""
    with pytest.MonkeyPatch.context() as patch:  # the verdict store stays in the tests' home
        patch.setenv("KERASIMG_HOME", str(tmp_path_factory.getbasetemp() / "kerasimg-home"))
        out = tmp_path_factory.mktemp("packed") / "tiny-pack"
        pack_data(str(tiny_scenes), out=out, shard_mb=0.02, log=lambda *_: None)
    return out


def relative_splits(data, root) -> dict[str, dict[str, int]]:
    """``{split: {path relative to root: label}}`` of a folder's resolved splits."""
    return {
        name: {os.path.relpath(p, root): y for p, y in zip(split.paths, split.labels)}
        for name, split in (("train", data.train), ("val", data.val), ("test", data.test))
    }


def test_a_pack_holds_the_folders_splits_and_every_record_decodes_to_the_files_pixels(
    tiny_scenes, packed_scenes
):
    folder = load_data(str(tiny_scenes), log=lambda *_: None)
    manifest = json.loads((packed_scenes / "manifest.json").read_text())
    assert manifest["class_names"] == folder.class_names
    assert manifest["settings"] == {
        "seed": 0,
        "val_split": 0.1,
        "val_from": "train",
        "test_split": 0.15,
        "verify": "pipeline",
        "max_pixels": manifest["settings"]["max_pixels"],
    }
    assert manifest["carved"] == ["val"] and manifest["skipped"] == []  # Intel layout: its own test split
    packed = load_data(str(packed_scenes), log=lambda *_: None)
    assert packed.class_names == folder.class_names
    expected = relative_splits(folder, tiny_scenes)
    for name in ("train", "val", "test"):
        info, split = manifest["splits"][name], getattr(packed, name)
        assert isinstance(split, PackedSplit) and len(split.shards) >= 2, name
        assert (
            info["count"]
            == len(getattr(folder, name))
            == len(split)
            == sum(s["count"] for s in info["shards"])
        )
        assert info["class_counts"] == getattr(folder, name).class_counts(folder.num_classes)
        files, labels = split.names()
        assert dict(zip(files, labels.tolist())) == expected[name], name  # the same files, the same labels
        records = list(split.encoded())
        assert len(records) == len(files)
        for file, (contents, label), (image, _) in zip(files, records, split.images()):
            on_disk = (tiny_scenes / file).read_bytes()
            assert contents.numpy() == on_disk and int(label) == expected[name][file]
            np.testing.assert_array_equal(image.numpy(), decode_rgb(tf.constant(on_disk)).numpy())


def predictions(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        r["file"]: (r["true"], np.array([float(v) for k, v in r.items() if k.startswith("p_")])) for r in rows
    }


def test_fit_on_a_pack_is_fit_on_its_folder_up_to_the_order(tiny_scenes, packed_scenes, tmp_path):
    from kerasimg.diagnose.evaluate_run import evaluate_run
    from kerasimg.training import fit

    quiet = dict(log=lambda *_: None)
    on_folder = fit(tiny_config(tiny_scenes, tmp_path / "folder", epochs=1), **quiet)
    on_pack = fit(tiny_config(packed_scenes, tmp_path / "pack", epochs=1), **quiet)
    configs = [json.loads((r.run_dir / "config.json").read_text()) for r in (on_folder, on_pack)]
    assert configs[0]["class_names"] == configs[1]["class_names"]
    sizes = [{k: c["data_summary"][k] for k in ("train", "val", "test")} for c in configs]
    assert sizes[0] == sizes[1] == {"train": 30, "val": 6, "test": 18}
    assert on_folder.metrics["test_examples"] == on_pack.metrics["test_examples"] == 18
    assert on_pack.metrics["test_skipped"] == 0
    folder_rows = {
        os.path.relpath(file, tiny_scenes): row
        for file, row in predictions(on_folder.run_dir / "predictions.csv").items()
    }
    pack_rows = predictions(on_pack.run_dir / "predictions.csv")
    # Every test image, by its file name, with its true class.
    assert {f: t for f, (t, _) in pack_rows.items()} == {f: t for f, (t, _) in folder_rows.items()}
    # The folder's model on the pack's test split: the same pixels give the same probabilities per file.
    again = evaluate_run(on_folder.run_dir, data=str(packed_scenes), **quiet)
    assert again["test_examples"] == 18
    assert again["test_accuracy"] == pytest.approx(on_folder.test_accuracy)
    for file, (_, probabilities) in predictions(again["predictions_path"]).items():
        np.testing.assert_allclose(probabilities, folder_rows[file][1], atol=2e-6, err_msg=file)


def test_a_tampered_shard_is_refused_naming_it_and_other_splits_are_refused_naming_the_setting(
    packed_scenes, tmp_path
):
    copy = shutil.copytree(packed_scenes, tmp_path / "copy")
    load_data(str(copy), log=lambda *_: None)  # checked once: the verdict is kept...
    manifest = json.loads((copy / "manifest.json").read_text())
    shard = copy / manifest["splits"]["test"]["shards"][1]["file"]
    contents = bytearray(shard.read_bytes())
    contents[len(contents) // 2] ^= 0xFF
    shard.write_bytes(bytes(contents))
    with pytest.raises(UserError, match=rf"^The shard {shard} is corrupted: its SHA-256 is [0-9a-f]{{16}}"):
        load_data(str(copy), log=lambda *_: None)  # ...but a changed file is checked again
    shard.unlink()
    with pytest.raises(UserError, match=rf"The shard {shard} that .*manifest.json lists is missing"):
        load_data(str(copy), log=lambda *_: None)
    with pytest.raises(ArgumentError, match=r"seed must be 0 for the pack in .*--seed 1.*Received: seed=1"):
        load_data(str(packed_scenes), seed=1)
    with pytest.raises(
        ArgumentError, match=r"val_split must be 0.1 for the pack in .*Received: val_split=0.2"
    ):
        load_data(str(packed_scenes), val_split=0.2)


def test_pack_refuses_a_folder_of_other_files_replaces_an_earlier_pack_and_lists_unreadable_files(
    tmp_path, capsys
):
    from kerasimg.pack import main

    data = make_class_tree(tmp_path / "data", {"cat": 4, "dog": 4}, ext="png")
    (data / "dog" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([str(data), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds files that are not a kerasimg pack (notes.txt); choose an empty or new --out, "
        "or pass --force to write the pack beside them.\n"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # refused before anything was read or written
    first = pack_data(str(data), out=out, force=True, log=lambda *_: None).manifest
    assert (out / "notes.txt").read_text() == "mine"
    assert first["skipped"] == [
        {
            "file": "dog/broken.png",
            "split": first["skipped"][0]["split"],
            "reason": first["skipped"][0]["reason"],
        }
    ]
    assert first["skipped"][0]["reason"].startswith("not a readable image")
    assert first["images"] == 8  # the 9 files, less the broken one
    # An edited manifest cannot make the replacement delete anything but its own shards inside the folder.
    victim = tmp_path / "victim.tfrecord"
    victim.write_text("keep")
    edited = Pack(out).read_manifest()
    edited["splits"]["train"]["shards"] += [{"file": "../victim.tfrecord"}, {"file": "notes.txt"}]
    (out / "manifest.json").write_text(json.dumps(edited))
    # Over an earlier pack, without --force.
    second = pack_data(str(data), out=out, seed=1, log=lambda *_: None).manifest
    assert victim.read_text() == "keep"
    shards = {s["file"] for info in second["splits"].values() for s in info["shards"]}
    assert sorted(p.name for p in out.iterdir()) == sorted({".lock", "notes.txt", "manifest.json", *shards})
    assert Pack(out).read_manifest()["settings"]["seed"] == 1
    # --verify full drops the broken file before carving the splits: it is listed in none of them.
    full = pack_data(str(data), out=tmp_path / "full", verify="full", log=lambda *_: None).manifest
    assert [(e["file"], e["split"]) for e in full["skipped"]] == [("dog/broken.png", None)]
    assert full["images"] == 8
    with pytest.raises(UserError, match=r"inside the data folder .*choose an --out outside it"):
        pack_data(str(data), out=data / "packed", log=lambda *_: None)
    assert not (data / "packed").exists()


def test_a_pack_repeats_the_folders_leakage_warning_to_fit(tmp_path):
    data = tmp_path / "data"
    make_class_tree(data / "train", {"cat": 3, "dog": 3}, ext="png")
    make_class_tree(data / "test", {"cat": 1, "dog": 1}, seed=1, ext="png")
    for i in range(3):  # validation takes one of them; the other two stay in train
        shutil.copy(data / "train" / "cat" / f"{i}.png", data / "test" / "cat" / f"copy{i}.png")
    logged = []
    pack_data(str(data), out=tmp_path / "pack", log=logged.append)
    warning = next(line for line in logged if "exact copies" in line)
    assert warning.startswith("Warning: 2 test image(s) are exact copies of training images")
    assert warning in load_data(str(tmp_path / "pack"), log=lambda *_: None).notes
    with pytest.raises(ArgumentError, match="out must be the path of the folder"):
        pack_data(str(data), out=None)
