"""Batched predict to CSV: the answers of one request per file; a bad file named, its batch kept."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tensorflow as tf

import kerasimg.predict as predict_cli
from kerasimg.models import build_classifier
from kerasimg.serving.export import export_model

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = build_classifier("small_cnn", len(CLASSES), image_size=32, weights="none")
    return export_model(model, CLASSES, 32, "pets", tmp_path_factory.mktemp("zoo"))


def test_csv_rows_match_one_request_per_file_and_name_the_bad_file(model_dir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 256, (40 + i, 40, 3), dtype=np.uint8)
        (folder / f"img{i}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    (folder / "img2b.jpg").write_bytes(b"\xff\xd8 not really")  # lands in a batch with good files
    batched, single = tmp_path / "batched.csv", tmp_path / "single.csv"
    common = ["--model", str(model_dir), str(folder), "--top-k", "2"]
    assert predict_cli.main([*common, "--csv", str(batched), "--batch-size", "4"]) == 0
    assert "Wrote 6 prediction(s)" in capsys.readouterr().out
    assert predict_cli.main([*common, "--csv", str(single), "--batch-size", "1"]) == 0
    rows = list(csv.DictReader(batched.open()))
    assert list(rows[0]) == ["file", "class", "score", "class_2", "score_2", "error"]
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == sorted(p.name for p in folder.iterdir())
    bad = next(r for r in rows if r["file"].endswith("img2b.jpg"))
    assert "not a readable image" in bad["error"] and bad["class"] == ""
    for b, s in zip(rows, csv.DictReader(single.open())):
        assert (b["file"], b["class"], b["class_2"], b["error"]) == (
            s["file"],
            s["class"],
            s["class_2"],
            s["error"],
        )
        if b["score"]:
            assert float(b["score"]) == pytest.approx(float(s["score"]), abs=1e-5)
            assert float(b["score"]) >= float(b["score_2"])


def test_batch_size_must_be_positive(model_dir, tmp_path, capsys):
    assert predict_cli.main(["--model", str(model_dir), str(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1. Received: --batch-size 0" in capsys.readouterr().err
