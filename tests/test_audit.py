"""``kerasimg audit``: confident learning, duplicates across splits, outliers, and fit --exclude."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
from helpers import tiny_config
from PIL import Image


def smooth_image(path, rng, brightness: int, size: int = 64) -> None:
    """A blurred random pattern around ``brightness``: structure a perceptual hash can tell apart."""
    coarse = rng.normal(0, 1, (16, 16, 3))
    pattern = np.asarray(
        Image.fromarray(((coarse + 3) * 40).clip(0, 255).astype(np.uint8)).resize((size, size))
    )
    pixels = (pattern.astype(float) - pattern.mean()) * 0.8 + brightness
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=95)


def make_toy(root, per_class: int = 10, test: int = 3):
    """Dark and bright smooth patterns in train/ and test/: a probe on random features separates them."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", test)):
        for i in range(count):
            smooth_image(root / split / "dark" / f"{i}.jpg", rng, 60)
            smooth_image(root / split / "bright" / f"{i}.jpg", rng, 195)
    return root


def test_confident_learning_thresholds_joint_and_ranking():
    from kerasimg.diagnose.audit_labels import class_thresholds, confident_joint, find_label_issues

    # Six images labelled 0, six labelled 1; images 2 and 8 look like the other class.
    labels = np.array([0] * 6 + [1] * 6)
    p0 = np.array([0.9, 0.8, 0.1, 0.7, 0.85, 0.75, 0.2, 0.1, 0.95, 0.3, 0.15, 0.25])
    probabilities = np.stack([p0, 1 - p0], axis=1)
    thresholds = class_thresholds(labels, probabilities)
    np.testing.assert_allclose(thresholds, [p0[:6].mean(), (1 - p0[6:]).mean()])
    raw = confident_joint(labels, probabilities, calibrate=False)
    # t = (0.683, 0.675): p0 = 0.7 still reaches t0, and image 9's p1 = 0.7 reaches t1.
    np.testing.assert_array_equal(raw, [[5, 1], [1, 5]])
    calibrated = confident_joint(labels, probabilities)
    np.testing.assert_allclose(calibrated.sum(axis=1), [6, 6])
    issues = find_label_issues(labels, probabilities)
    assert np.flatnonzero(issues.is_issue).tolist() == [2, 8]
    assert issues.ranked()[:2].tolist() == [8, 2], "the flips, lowest self-confidence (0.05, 0.1) first"
    assert issues.suggested[[2, 8]].tolist() == [1, 0]


def test_phash_tells_a_reencoded_resized_copy_from_another_drawing(tmp_path):
    from kerasimg.data.scenes import draw_scene
    from kerasimg.diagnose.audit_duplicates import MAX_DISTANCE, near_duplicate_pairs, phash

    rng = np.random.default_rng(0)
    for i, name in enumerate(("sea", "sea", "glacier")):
        Image.fromarray(draw_scene(name, rng)).save(tmp_path / f"{i}.jpg", quality=90)
    with Image.open(tmp_path / "0.jpg") as image:
        image.resize((135, 135), Image.Resampling.BICUBIC).save(tmp_path / "copy.jpg", quality=70)
    files = [tmp_path / n for n in ("0.jpg", "1.jpg", "2.jpg", "copy.jpg")]
    hashes = np.stack([phash(f) for f in files])
    pairs = near_duplicate_pairs(hashes)
    assert [(p.first, p.second) for p in pairs] == [(0, 3)], "only the copy, not another sea"
    assert pairs[0].distance <= MAX_DISTANCE


def test_exact_copies_across_train_and_test_give_one_warning_line(tmp_path):
    from kerasimg.data.duplicates import cross_split_duplicates, leakage_warning
    from kerasimg.data.splits import FileSplit

    toy = make_toy(tmp_path / "toy", per_class=3, test=1)
    train = sorted(str(p) for p in (toy / "train").rglob("*.jpg"))
    test = sorted(str(p) for p in (toy / "test").rglob("*.jpg"))
    assert leakage_warning(FileSplit(train, [0] * 6), FileSplit(test, [0] * 2)) is None
    leaked = toy / "test" / "dark" / "leaked.jpg"
    leaked.write_bytes(open(train[0], "rb").read())
    assert cross_split_duplicates(train, [*test, str(leaked)]) == [(train[0], str(leaked))]
    warning = leakage_warning(FileSplit(train, [0] * 6), FileSplit([*test, str(leaked)], [0] * 3))
    assert "1 test image(s) are exact copies" in warning and "\n" not in warning


def test_audit_finds_planted_flips_and_leaked_copies_then_fit_excludes_them(tmp_path, small_cnn_weights):
    """The cheap version of the issue's goals: the test-owned fault injection on a toy set."""
    from inject_faults import inject, score

    import kerasimg
    import kerasimg.audit as audit_cli
    from kerasimg.training import Run

    faults = inject(str(make_toy(tmp_path / "clean", per_class=12, test=4)), tmp_path / "faulty", 0.1, 2)
    assert len(faults["flipped"]) == 2 and len(faults["duplicates"]) == 2
    out = tmp_path / "audit"
    code = audit_cli.main(
        [str(tmp_path / "faulty"), "--backbone", "small_cnn", "--weights", small_cnn_weights]
        + ["--image-size", "32", "--folds", "3", "--out", str(out)]
    )
    assert code == 0
    measured = score(tmp_path / "faulty", out)
    assert measured["label_precision"] == 1.0 and measured["label_recall"] == 1.0, measured
    assert measured["duplicates_found"] == 1.0 and measured["clean_flagged_as_duplicate"] == 0.0, measured
    summary = json.loads((out / "audit.json").read_text())
    assert summary["cross_split_duplicates"] == 2 and summary["issues"]["label"] >= 2
    with open(out / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "file", "split", "issue", "score", "given_label", "suggested_label", "duplicate_of", "detail"
    ]  # fmt: skip
    with open(out / "label_ranking.csv", newline="") as f:
        ranking = list(csv.DictReader(f))
    assert len(ranking) == 24 and list(ranking[0])[-2:] == ["p_bright", "p_dark"]
    scores = [float(r["score"]) for r in ranking]
    assert scores == sorted(scores), "the likeliest mislabelled first"
    given = [float(r[f"p_{r['given_label']}"]) for r in ranking]
    np.testing.assert_allclose(given, scores, atol=1e-5)
    flagged = {os.path.realpath(r["file"]) for r in rows if r["issue"] == "label"}
    assert {os.path.realpath(f) for f in faults["flipped"]} <= flagged
    assert all(r["split"] == "train" for r in rows if r["issue"] == "duplicate"), "the train copy is dropped"
    assert kerasimg.audit is not None and callable(kerasimg.audit)

    # fit --exclude: the flagged training files are gone, the test split untouched, recorded in
    # config.json; a byte-for-byte copy of a kept training image in test gets fit's one-line warning.
    dropped = {os.path.realpath(r["file"]) for r in rows if r["issue"] in ("label", "duplicate")}
    kept = next(p for p in sorted((tmp_path / "faulty" / "train").rglob("*.jpg")) if str(p) not in dropped)
    shutil.copy(kept, tmp_path / "faulty" / "test" / kept.parent.name / "exact-copy.jpg")
    said = []
    result = kerasimg.fit(**vars(tiny_config(tmp_path / "faulty", tmp_path / "run", epochs=1)) | {
        "exclude": str(out / "audit.csv"), "exclude_issues": "label,duplicate", "log": said.append
    })  # fmt: skip
    assert [line for line in said if "exact copies" in line] == [
        f"Warning: 1 test image(s) are exact copies of training images (e.g. "
        f"{tmp_path / 'faulty' / 'test' / kept.parent.name / 'exact-copy.jpg'} = {kept}), which inflates "
        "test accuracy; `python -m kerasimg.audit DATA` lists them and near copies."
    ]
    config = Run(result.run_dir).read_config()
    assert config["arguments"]["exclude"] == str(out / "audit.csv")
    assert config["arguments"]["exclude_issues"] == "label,duplicate"
    assert config["data_summary"]["excluded"] == len(dropped)
    assert config["data_summary"]["train"] + config["data_summary"]["val"] == 24 - len(dropped)
    assert config["data_summary"]["test"] == 8 + 2 + 1


def test_audit_page_renders_in_headless_chromium_with_every_thumbnail(tmp_path, small_cnn_weights):
    from inject_faults import inject
    from test_diagnose import MEASURE, chromium

    import kerasimg

    inject(str(make_toy(tmp_path / "clean", per_class=6, test=2)), tmp_path / "faulty", 0.2, 1)
    result = kerasimg.audit(
        str(tmp_path / "faulty"), backbone="small_cnn", weights=small_cnn_weights, image_size=32, folds=2,
        out=tmp_path / "audit", log=lambda *_: None,
    )  # fmt: skip
    text = (tmp_path / "audit" / "audit.html").read_text()
    assert "http://" not in text and "https://" not in text, "nothing is fetched"
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", MEASURE + "</body>"))
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    # One thumbnail per flagged file, two per duplicate (the copy and the original).
    expected = len(result.rows) + result.count("duplicate")
    assert len(widths) == expected > 0 and all(w > 0 for w in widths), (widths, expected)
    for issue in ("label", "duplicate", "outlier"):
        assert re.search(rf'<section id="{issue}"><h2>[^<]*: {result.count(issue)}</h2>', dom)


def test_bad_exclusions_are_refused_with_one_line(tmp_path):
    from kerasimg.data.exclude import read_exclusions
    from kerasimg.errors import UserError

    with pytest.raises(UserError, match=r"No audit table at .*missing.csv: run `python -m kerasimg.audit"):
        read_exclusions(tmp_path / "missing.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="is not a kerasimg audit.csv"):
        read_exclusions(tmp_path / "other.csv")
    with pytest.raises(UserError, match=r"exclude_issues must be a comma-separated list of label, duplicate"):
        tiny_config("scenes", tmp_path / "run", exclude_issues="label,typo").validate()
    with pytest.raises(UserError, match=r"exclude must be an audit.csv .*Received: exclude="):
        tiny_config("scenes", tmp_path / "run", exclude=str(tmp_path / "nope.csv")).validate()


def test_short_fit_predicts_each_image_with_a_model_that_never_trained_on_it(tmp_path, monkeypatch):
    """--weights none: K models from scratch, each predicting only the fold it did not see."""
    from kerasimg.data.splits import FileSplit
    from kerasimg.diagnose.audit_probabilities import ShortFit, decoded_images
    from kerasimg.models import build_classifier

    toy = make_toy(tmp_path / "toy", per_class=6, test=0)
    files = sorted((toy / "train").rglob("*.jpg"))
    split = FileSplit([str(p) for p in files], [int(p.parent.name == "dark") for p in files])
    seen = []

    def untrained(self, images, labels, fold):  # no training: the test is about who predicts what
        seen.append({image.tobytes() for image in images})
        return build_classifier("small_cnn", 2, image_size=32, weights="none")

    monkeypatch.setattr(ShortFit, "_train", untrained)
    fit = ShortFit("small_cnn", 2, 32, epochs=1, batch_size=4, folds=3, seed=0, log=lambda *_: None)
    probabilities = fit.out_of_fold(split)
    assert len(seen) == 3 and all(len(s) == 8 for s in seen)
    images = {image.tobytes() for image in decoded_images(split, 32, 4)}  # decoded once, for every fold
    assert len(images) == len(split)
    for image in images:
        assert sum(image in s for s in seen) == 2, "each image trains two of the three models"
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert fit.embed(split).shape == (12, 256), "small_cnn's pooled features, from the first fold's model"
