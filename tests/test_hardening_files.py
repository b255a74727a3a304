"""Hardening, third round: control characters in names, CSV cells and corrupt files each fail safe
with one line (issue 25 items 2, 3, 4; items 1 and 10 are in tests/test_failsafe.py)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from helpers import make_class_tree

import kerasimg
import kerasimg.evaluate as evaluate_cli
import kerasimg.explain as explain_cli
import kerasimg.export as export_cli
import kerasimg.fit as fit_cli
import kerasimg.report as report_cli
from kerasimg import zoo as zoo_cli
from kerasimg.data import load_data
from kerasimg.diagnose.predictions import Predictions, read_predictions, write_predictions
from kerasimg.errors import UserError
from kerasimg.models import build_classifier
from kerasimg.serving import Zoo, batch_predict, export_model
from kerasimg.serving.formats import LABELS_FILE, read_labels_file
from kerasimg.serving.runtimes import read_labels
from kerasimg.serving.signatures import PIXELS_INPUT
from kerasimg.tables import csv_value, write_csv


def quiet(*_):
    pass


# 4. Corrupt files: one line naming the file, and nothing published that the index does not list.

CLASSES = ["cat", "dog"]


def fit_args(data, out):
    return [
        "--backbone", "small_cnn", "--weights", "none", "--data", str(data), "--epochs", "1",
        "--batch-size", "8", "--image-size", "32", "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tiny_scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert fit_cli.main(fit_args(tiny_scenes, out)) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run to damage (its features and backups left out)."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns("features", "backup", "tensorboard"))
    return copy


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_model_file_of_random_bytes_is_named_as_corrupt(run_copy, tiny_scenes, tmp_path, capsys):
    model = run_copy / "model.keras"
    model.write_bytes(np.random.default_rng(0).bytes(5000))
    expected = f"{model} is not a Keras model file: corrupt or truncated"
    for main, argv in (
        (evaluate_cli.main, [str(run_copy)]),
        (explain_cli.main, [str(run_copy), str(tiny_scenes), "--out", str(tmp_path / "maps")]),
        (export_cli.main, [str(run_copy), "--zoo", str(tmp_path / "zoo")]),
    ):
        assert main(argv) == 2
        assert expected in _one_error_line(capsys)
    with pytest.raises(UserError, match="not a Keras model file: corrupt or truncated"):
        kerasimg.load_model(model)
    assert not (tmp_path / "zoo" / "small_cnn").exists()


def test_a_truncated_model_file_is_named_as_corrupt(finished_run, tmp_path):
    model = tmp_path / "model.keras"
    data = (finished_run / "model.keras").read_bytes()
    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a Keras model file: corrupt or truncated"):
        kerasimg.load_model(model)


def test_a_model_with_other_classes_is_one_line_in_evaluate_and_explain(
    run_copy, tiny_scenes, tmp_path, capsys
):
    classes = len(json.loads((run_copy / "config.json").read_text())["class_names"])
    assert classes != 2
    build_classifier("small_cnn", 2, image_size=32, weights="none").save(run_copy / "model.keras")
    for main, argv in (
        (evaluate_cli.main, [str(run_copy)]),
        (explain_cli.main, [str(run_copy), str(tiny_scenes), "--out", str(tmp_path / "maps")]),
    ):
        assert main(argv) == 2
        assert f"has 2 outputs but its run names {classes} classes" in _one_error_line(capsys)


def test_explain_on_a_missing_run_or_one_without_a_model_is_one_line(run_copy, tiny_scenes, tmp_path, capsys):
    missing = tmp_path / "runs" / "missing"
    assert explain_cli.main([str(missing), str(tiny_scenes), "--zoo", str(tmp_path / "zoo")]) == 2
    assert f"No run directory or zoo model {str(missing)!r}" in _one_error_line(capsys)
    (run_copy / "model.keras").unlink()
    assert explain_cli.main([str(run_copy), str(tiny_scenes)]) == 2
    assert "model.keras is missing" in _one_error_line(capsys)


@pytest.fixture(scope="module")
def one_export(tmp_path_factory):
    """A zoo holding pets/1, a tiny two-class model."""
    zoo = tmp_path_factory.mktemp("one-export") / "zoo"
    export_model(
        build_classifier("small_cnn", len(CLASSES), image_size=32, weights="none"), CLASSES, 32, "pets", zoo
    )
    return zoo


@pytest.mark.parametrize("index", ['{"models": [{"name": "pets", "vers', "[1, 2]", '{"models": 3}'])
def test_a_damaged_zoo_index_is_one_line_and_reindex_rebuilds_it(
    finished_run, one_export, tmp_path, capsys, index
):
    zoo = tmp_path / "zoo"
    shutil.copytree(one_export, zoo)
    (zoo / "zoo.json").write_text(index)
    expected = f"The zoo index {zoo / 'zoo.json'} is damaged"
    for main, argv in (
        (zoo_cli.main, ["list", "--zoo", str(zoo)]),
        (zoo_cli.main, ["remove", "pets/1", "--zoo", str(zoo)]),
        (report_cli.main, [str(finished_run), "--out", str(tmp_path / "r.html"), "--zoo", str(zoo)]),
        (export_cli.main, [str(finished_run), "--name", "pets", "--zoo", str(zoo)]),
    ):
        assert main(argv) == 2
        assert expected in _one_error_line(capsys)
    # Nothing was removed, and the export published no version that the index could not list.
    assert sorted(p.name for p in (zoo / "pets").iterdir()) == ["1"]
    assert zoo_cli.main(["reindex", "--zoo", str(zoo)]) == 0
    [entry] = Zoo(zoo).entries()
    assert (entry["name"], entry["version"], entry["class_names"]) == ("pets", 1, CLASSES)
    assert entry["path"] == str(zoo / "pets" / "1")
    assert "pets" in (zoo / "models.config").read_text()


# 2. Class names with control characters are refused; every labels file round-trips the exact names.


@pytest.mark.parametrize("bad", ["dog\nfish", "dog\tfish", "dog\x01", "dog\x1b[31m", "dog\x7f"])
def test_a_class_folder_with_a_control_character_is_refused_naming_it(tmp_path, bad):
    root = make_class_tree(tmp_path / "data", {"cat": 2, bad: 2})
    with pytest.raises(UserError, match="control character") as raised:
        load_data(str(root), verify=False, log=quiet)
    assert repr(bad) in str(raised.value) and str(root) in str(raised.value)
    with pytest.raises(UserError, match="control character"):
        export_model(None, ["cat", bad], 32, "pets", tmp_path / "zoo")
    assert not (tmp_path / "zoo" / "pets").exists()


def test_every_labels_file_of_an_export_reads_back_the_exact_names(tmp_path):
    # Line separators that str.splitlines() also splits on, spaces, accents and a formula: all kept.
    names = ["a\u2028b", "x\x85y", " café au lait ", "=1+1", "z\u2029"]
    model = build_classifier("small_cnn", len(names), image_size=32, weights="none")
    version = export_model(model, names, 32, "odd", tmp_path / "zoo", top_k=len(names))
    assert read_labels(version) == names  # what the ONNX and LiteRT runtimes name their outputs with
    assert read_labels_file(version / "assets" / LABELS_FILE) == names  # the SavedModel's asset
    assert Zoo(tmp_path / "zoo").entries()[0]["class_names"] == names
    served = tf.saved_model.load(str(version)).signatures["predict_images"]
    outputs = served(**{PIXELS_INPUT: tf.zeros([1, 32, 32, 3])})
    assert sorted(c.decode() for c in outputs["top_k_classes"].numpy()[0]) == sorted(names)


# 3. CSV cells that a spreadsheet would run as formulas get a leading quote; JSON keeps the raw names.

HOSTILE = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tcat", "\rdog", "'quoted", "plain"]


def test_predictions_csv_neutralises_formula_cells_and_reads_back_the_raw_names(tmp_path):
    names = HOSTILE[:4] + ["plain"]
    files = [f"{start}x.jpg" for start in ("=", "@", "-", "'", "a")]
    probabilities = np.eye(len(names))[[1, 2, 3, 4, 0]] * 0.9 + 0.02
    predictions = Predictions(files, np.arange(5), probabilities, names)
    path = write_predictions(predictions, tmp_path / "predictions.csv")
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    cells = [*header, *(cell for row in rows for cell in row)]
    # What a spreadsheet would run: no cell starts with a formula character.
    assert not [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r")) or c.startswith("-2")]
    assert [r[0] for r in rows] == ["'=x.jpg", "'@x.jpg", "'-x.jpg", "''x.jpg", "ax.jpg"]
    assert rows[0][1] == '\'=HYPERLINK("http://x")' and rows[0][2] == "'+1"
    back = read_predictions(path)
    assert back.files == files and back.class_names == names
    np.testing.assert_array_equal(back.labels, np.arange(5))


def test_predict_csv_neutralises_formula_cells_and_json_keeps_them(tmp_path):
    results = [{"file": name + ".jpg", "top": [(name, 0.75), ("plain", 0.25)]} for name in HOSTILE]
    results.append({"file": "-bad.jpg", "error": "=not an image"})
    path = batch_predict.write_csv(results, tmp_path / "out.csv", top_k=2)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[1] for r in rows[:-1]] == ["'" + n if n != "plain" else n for n in HOSTILE]
    assert [r[0] for r in rows[:-1]] == ["'" + n + ".jpg" if n != "plain" else n + ".jpg" for n in HOSTILE]
    assert rows[-1][0] == "'-bad.jpg" and rows[-1][-1] == "'=not an image"
    assert rows[0][2] == "0.750000"  # numbers untouched
    assert [csv_value(r[1]) for r in rows[:-1]] == HOSTILE


def test_tables_leave_numbers_alone_and_quote_formula_text(tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        [{"name": "=1+1", "score": -0.5}, {"name": "-1", "score": "-1e-3"}],
        [("name", "name", ""), ("score", "score", "")],
    )
    assert path.read_text().splitlines() == ["name,score", "'=1+1,-0.5", "-1,-1e-3"]
