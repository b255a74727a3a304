"""``fit --task multilabel``: a labels CSV of several classes per image, trained, scored and served."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_multilabel_csv, serve_in_fresh_process, tiny_config

import kerasimg
from kerasimg.data import load_data
from kerasimg.diagnose.multilabel_evaluation import choose_thresholds, multilabel_metrics
from kerasimg.errors import UserError


def write_csv(path, text):
    path.write_text(text)
    return str(path)


def test_the_labels_column_gives_multi_hot_targets_and_stratifies_on_the_first(tmp_path):
    data = load_data(
        str(make_multilabel_csv(tmp_path, {"train": 12, "test": 4})), task="multilabel", log=print
    )
    assert data.multilabel and data.class_names == ["blue", "red", "striped"]
    assert data.carved == ["val"]  # the CSV gives no val rows: carved from train as for single labels
    every = data.train + data.val
    assert sorted(every.paths) == sorted(str(tmp_path / "img" / f"train{i}.png") for i in range(12))
    for path, target, first in zip(every.paths, every.targets, every.labels):
        i = int(path.rsplit("train", 1)[1].removesuffix(".png"))
        assert target == (int(i % 2 == 1), int(i % 2 == 0), int((i // 2) % 2 == 0))
        assert first == (1 if i % 2 == 0 else 0)  # the first listed class: red or blue
    assert data.train.class_counts(3)[2] + data.val.class_counts(3)[2] == 6  # striped, as a second label


@pytest.mark.parametrize(
    ("text", "task", "message"),
    [
        ("file,labels\na.png,red;blue\n", "single", r"unknown column 'labels'.*pass --task multilabel"),
        ("file,label\na.png,red\n", "multilabel", r"unknown column 'label'.*drop --task multilabel"),
        ("file,labels\na.png, ; \n", "multilabel", r"Line 2 of .* has an empty label \(file a.png\)"),
    ],
)
def test_bad_multilabel_csvs_are_one_line_naming_the_row(tmp_path, text, task, message):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(UserError, match=message):
        load_data(write_csv(tmp_path / "labels.csv", text), task=task, log=print)


def test_multilabel_needs_a_csv_and_refuses_single_label_settings(tmp_path):
    with pytest.raises(UserError, match=r"task multilabel reads a labels CSV .*Received: task='multilabel'"):
        tiny_config(tmp_path, tmp_path / "run", task="multilabel").validate()
    csv = str(tmp_path / "labels.csv")
    for setting, value in (("folds", 3), ("tta", "flip"), ("class_weight", "auto")):
        with pytest.raises(UserError, match=rf"{setting} .*not with task multilabel"):
            tiny_config(csv, tmp_path / "run", task="multilabel", **{setting: value}).validate()


def test_a_multilabel_runs_check_images_come_as_pixels_and_no_labels(tmp_path):
    """The export measures int8/bfloat16 agreement on (pixels, labels) pairs; a multi-label run's
    labels are not one class per image, so its pairs carry None (they were bare pixels, which the
    measurement could not unpack)."""
    from kerasimg.serving.export import run_images

    csv = make_multilabel_csv(tmp_path)
    images = run_images({"data": str(csv), "task": "multilabel"}, 32, 4, batch_size=4)
    pairs = list(images.test())
    assert sum(len(pixels) for pixels, _ in pairs) == 8 and all(labels is None for _, labels in pairs)
    assert pairs[0][0].shape == (4, 32, 32, 3)


def test_thresholds_are_chosen_on_validation_and_metrics_are_scikit_learns():
    from sklearn.metrics import average_precision_score, f1_score

    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [1, 1]])
    scores = np.array([[0.9, 0.1], [0.3, 0.2], [0.2, 0.7], [0.25, 0.65], [0.8, 0.9]])
    thresholds = choose_thresholds(targets, scores)
    # class 0: keeping 0.3 and up catches every positive, dropping 0.25 and 0.2: halfway is 0.275.
    # class 1: 0.7 and 0.9 are the positives, 0.65 the highest negative: 0.675.
    np.testing.assert_allclose(thresholds, [0.275, 0.675])
    summary = multilabel_metrics(targets, scores, thresholds, ["a", "b"])
    assert summary["accuracy"] == 1.0 and summary["micro_f1"] == 1.0
    assert summary["map"] == pytest.approx(
        np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in (0, 1)])
    )
    at_half = (scores >= 0.5).astype(int)
    assert f1_score(targets, at_half, average="macro") < summary["macro_f1"]  # the chosen cuts beat 0.5
    assert choose_thresholds(np.zeros((3, 1), int), np.full((3, 1), 0.9))[0] == 0.5  # never seen: 0.5


def test_a_multilabel_run_learns_on_cached_features_then_exports_and_serves_each_class(
    tmp_path, small_cnn_weights, capsys
):
    """Probe on cached features, then the last block: multi-hot targets through both caches, then
    the thresholds chosen on validation travel into the SavedModel a fresh process serves."""
    from kerasimg.fit import main as fit_main

    csv = make_multilabel_csv(tmp_path)
    argv = [
        "--backbone",
        "small_cnn",
        "--weights",
        small_cnn_weights,
        "--data",
        str(csv),
        "--task",
        "multilabel",
    ]
    argv += ["--image-size", "32", "--batch-size", "8", "--schedule", "probe-then-last:4,2", "--epochs", "6"]
    argv += ["--lr", "3e-2", "--seed", "0", "--out", str(tmp_path / "run"), "--export", "tags"]
    assert fit_main([*argv, "--zoo", str(tmp_path / "zoo")]) == 0
    said = capsys.readouterr().out
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"Test mAP {metrics['test_map']:.3f} on 8 images; micro-F1" in said
    exported = Path(said.split("Exported to ", 1)[1].splitlines()[0])
    assert metrics["task"] == "multilabel" and metrics["test_examples"] == 8
    assert metrics["test_map"] >= 0.9, metrics  # separable by colour and by the bright top half
    assert set(metrics["thresholds"]) == {"blue", "red", "striped"}
    history = (run_dir / "history.csv").read_text()
    assert "val_map" in history.splitlines()[0]

    header, *rows = (run_dir / "predictions.csv").read_text().splitlines()
    assert header == "file,true,predicted,p_blue,p_red,p_striped,loss"
    first = rows[0].split(",")
    assert first[1] == "red;striped"  # test0: red and striped

    report = (run_dir / "report.html").read_text()
    assert "test mAP" in report and "Precision-recall" in report and "Confusion matrix" not in report
    assert (run_dir / "precision_recall.png").stat().st_size > 0

    entry = json.loads((tmp_path / "zoo" / "zoo.json").read_text())["models"][-1]
    assert entry["task"] == "multilabel" and entry["thresholds"] == metrics["thresholds"]
    files = [tmp_path / "img" / f"test{i}.png" for i in range(4)]
    served = serve_in_fresh_process(exported, files, tmp_path)
    assert "predicted" in served["outputs"]
    probabilities = np.array(served["probabilities"])
    assert not np.allclose(probabilities.sum(axis=1), 1.0)  # sigmoid: each class on its own
    cuts = np.array([metrics["thresholds"][n] for n in served["labels"]])
    assert served["predicted"] == (probabilities >= cuts).tolist()
    expected = [[i % 2 == 1, i % 2 == 0, (i // 2) % 2 == 0] for i in range(4)]
    assert np.mean(np.array(served["predicted"]) == np.array(expected)) >= 0.9
    answers = kerasimg.predict(exported, [str(f) for f in files])  # predict names the classes
    named = [[n for n, kept in zip(served["labels"], row) if kept] for row in served["predicted"]]
    assert [a["predicted"] for a in answers] == named
