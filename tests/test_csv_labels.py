"""Labels in a CSV file or a DataFrame: splits as the file gives them, every bad row named by its line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import serve_in_fresh_process
from PIL import Image

from kerasimg.data import load_data
from kerasimg.errors import UserError

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def images(folder, count=4):
    """``count`` solid images per colour in ``folder/img/``; returns ``[(relative path, colour)]``."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for colour, rgb in COLOURS.items():
        for i in range(count):
            pixels = np.clip(np.array(rgb) + rng.integers(-20, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "img" / f"{colour}{i}.png")
            rows.append((f"img/{colour}{i}.png", colour))
    return rows


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_split_column_is_honoured_and_paths_are_relative_to_the_csv(tmp_path):
    rows = images(tmp_path)
    lines = ["\ufefffile,label,split"]  # the BOM Excel writes is not part of the first column's name
    for i, (file, colour) in enumerate(rows):
        split = "test" if i % 4 == 0 else "validation" if i % 4 == 1 else "train"
        lines.append(f"{file}, {colour} ,{split}")  # spaces around a label are not part of it
    data = load_data(write_csv(tmp_path / "labels.csv", "\n".join(lines) + "\n\n"), verify="full", log=print)
    assert data.class_names == ["blue", "green", "red"]
    assert (len(data.train), len(data.val), len(data.test)) == (6, 3, 3)
    assert data.carved == [] and data.name == "labels"
    assert data.test.paths[0] == str(tmp_path / "img" / "red0.png")
    assert [data.class_names[y] for y in data.test.labels] == ["red", "blue", "green"]


def test_without_a_split_column_test_and_validation_are_carved_stratified(tmp_path):
    rows = images(tmp_path, count=8)
    (tmp_path / "tables").mkdir()
    text = "label,file\n" + "".join(f"{colour},{file}\n" for file, colour in rows)
    csv_path = write_csv(tmp_path / "tables" / "labels.csv", text)
    data = load_data(csv_path, image_dir=str(tmp_path), seed=3, log=print)
    assert data.carved == ["test", "val"]
    assert data.test.class_counts(3) == [1, 1, 1] and data.val.class_counts(3) == [1, 1, 1]
    assert len(data.train) == 18
    with pytest.raises(
        UserError,
        match=r"Line 2 of .*labels\.csv names img/red0\.png, which is not a file .*"
        r"24 rows in all name missing files.*--image-dir",
    ):
        load_data(csv_path, log=print)  # relative to the CSV's own folder, where no img/ is


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "file,label,colour\na.png,red,x\n",
            r"Line 1 of .*: unknown column 'colour'; the columns are file, label",
        ),
        ("file,labels\na.png,red;blue\n", r"unknown column 'labels'.*multi-label"),
        ("file,file,label\n", r"Line 1 of .*: the header needs each of file and label once"),
        ("file\n", r"the header needs each of file and label"),
        ("", r"is empty: expected a header line"),
        ("file,label\n", r"has a header but no rows"),
        (
            "file,label\nimg/red0.png,red\nimg/blue0.png,\n",
            r"Line 3 of .* has an empty label \(file img/blue0\.png\)",
        ),
        ("file,label\n,red\n", r"Line 2 of .* has an empty file field"),
        ("file,label\nimg/red0.png,red,extra\n", r"Line 2 of .* has 3 fields, the header 2.*Quote a value"),
        (
            "file,label,split\nimg/red0.png,red,holdout\n",
            r"Line 2 of .*: split must be train, val .* split='holdout'",
        ),
        (
            "file,label\nimg/red0.png,red\nimg/blue0.png,blue\nimg/red0.png,blue\n",
            r"Line 4 of .* lists img/red0\.png again \(first on line 2\)",
        ),
        ("file,label\nimg/red0.png,red\nimg/green0.png,red\n", r"training rows of 1 class\(es\) \['red'\]"),
        (
            "file,label,split\nimg/red0.png,red,train\nimg/blue0.png,blue,train\nimg/green0.png,green,test\n",
            r"Line 4 of .*: class 'green' is in the test split but no training row has it",
        ),
        ("file,label\nimg/red0.png,red\nimg/blue0.png,bl\tue\n", r"control character"),
    ],
)
def test_a_bad_labels_csv_is_one_line_naming_the_line(tmp_path, text, message):
    images(tmp_path, count=1)
    with pytest.raises(UserError, match=message) as error:
        load_data(write_csv(tmp_path / "labels.csv", text), log=print)
    assert "\n" not in str(error.value)


def test_image_dir_is_refused_beside_data_that_is_not_a_csv(tmp_path):
    with pytest.raises(UserError, match=r"--image-dir roots the relative paths of a labels CSV"):
        load_data("scenes:2,1", image_dir=str(tmp_path))
    from kerasimg.training.config import FitConfig

    with pytest.raises(UserError, match=r"image_dir roots the paths of a labels CSV"):
        FitConfig(backbone="small_cnn", data=str(tmp_path), image_dir=str(tmp_path)).validate()


def test_a_dataframe_trains_exports_and_serves_its_labels_in_a_fresh_process(tmp_path, monkeypatch):
    """The whole path: a DataFrame of relative paths, fit, export, a fresh TensorFlow process serving it."""
    pandas = pytest.importorskip("pandas")
    import kerasimg

    monkeypatch.setenv("KERASIMG_HOME", str(tmp_path / "home"))
    rows = images(tmp_path / "photos", count=6)
    split = ["test" if i % 6 == 0 else "train" for i in range(len(rows))]
    frame = pandas.DataFrame({"file": [f for f, _ in rows], "label": [c for _, c in rows], "split": split})
    result = kerasimg.fit(
        backbone="small_cnn",
        weights="none",
        data=frame,
        image_dir=str(tmp_path / "photos"),
        image_size=32,
        epochs=1,
        batch_size=8,
        out=str(tmp_path / "run"),
        export="colours",
        zoo=str(tmp_path / "zoo"),
        log=lambda *_: None,
    )
    config = json.loads((result.run_dir / "config.json").read_text())
    kept = config["arguments"]["data"]
    assert kept.startswith(str(tmp_path / "home" / "frames")) and kept.endswith(".csv")
    assert config["class_names"] == ["blue", "green", "red"]
    assert result.metrics["test_examples"] == 3, "the frame's test rows, not a carved split"
    again = load_data(kept, log=print)  # the kept CSV names the same images, from any folder
    wanted = [str(tmp_path / "photos" / file) for (file, _), s in zip(rows, split) if s == "test"]
    assert sorted(again.test.paths) == sorted(wanted)
    served = serve_in_fresh_process(result.exported, [tmp_path / "photos" / "img" / "red1.png"], tmp_path)
    assert served["labels"] == ["blue", "green", "red"]
