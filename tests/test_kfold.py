"""k-fold cross-validation: folds that partition train+val, one shared test split, a summary that resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_class_tree, make_separable

import kerasimg
from kerasimg.data import load_data
from kerasimg.data.sources import run_data_settings
from kerasimg.data.splits import FileSplit, fold_split
from kerasimg.errors import UserError
from kerasimg.training import FitConfig


def test_the_k_folds_partition_the_pool_stratified_and_seeded():
    paths = [f"/d/{c}/{i}.jpg" for c in "abc" for i in range(7)]
    split = FileSplit(paths, [ord(p[3]) - ord("a") for p in paths])
    held = [fold_split(split, 3, k, seed=5)[1] for k in (1, 2, 3)]
    assert sorted(p for h in held for p in h.paths) == sorted(paths), "each file validates exactly once"
    for h in held:
        assert all(c in (2, 3) for c in h.class_counts(3)), h.class_counts(3)
    rest, fold = fold_split(FileSplit(paths[::-1], split.labels[::-1]), 3, 2, seed=5)
    assert sorted(fold.paths) == sorted(held[1].paths), "listing order does not change the folds"
    assert len(rest) + len(fold) == len(paths) and not set(rest.paths) & set(fold.paths)
    assert sorted(fold_split(split, 3, 2, seed=6)[1].paths) != sorted(held[1].paths)


def test_folds_share_the_test_split_and_refuse_a_class_too_small(tmp_path):
    root = make_class_tree(tmp_path / "d", {"a": 9, "b": 9})
    plain = load_data(str(root), seed=1, log=print)
    folded = [load_data(str(root), seed=1, folds=3, fold=k, log=print) for k in (1, 2, 3)]
    for data in folded:
        assert data.test.paths == plain.test.paths, "the test split is the one a run without folds has"
        assert sorted(data.train.paths + data.val.paths) == sorted(plain.train.paths + plain.val.paths)
    assert sorted(p for d in folded for p in d.val.paths) == sorted(plain.train.paths + plain.val.paths)
    make_class_tree(tmp_path / "d", {"c": 3}, seed=2)  # 3 images: 1 held out as test, 2 left for 3 folds
    with pytest.raises(UserError, match=r"--folds 3: class 'c' of .* has 2 training image\(s\)"):
        load_data(str(root), folds=3, fold=1, log=print)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(folds=1), "folds must be at least 2"),
        (dict(folds=3, fold=4), r"fold must be between 1 and folds \(3\)"),
        (dict(fold=2), "fold picks one of --folds K"),
        (dict(folds=3, val_from="test"), "not with val_from test"),
        (dict(folds=3, data="tfds:mnist", fold=1), "--folds splits image files; tfds:mnist"),
    ],
)
def test_bad_fold_settings_are_one_line(settings, message, tmp_path):
    with pytest.raises(UserError, match=message):
        config = FitConfig(backbone="small_cnn", weights="none", **{"data": str(tmp_path), **settings})
        config.validate()
        load_data(config.data, folds=config.folds, fold=config.fold)


def test_two_folds_train_summarise_and_a_second_launch_keeps_them(tmp_path):
    data = make_separable(tmp_path / "data", per_class=6)
    settings = dict(
        backbone="small_cnn", weights="none", data=str(data), epochs=1, batch_size=8, image_size=32
    )
    out = tmp_path / "cv"
    result = kerasimg.fit(**settings, folds=2, out=str(out), log=lambda *_: None)
    assert [r.run_dir.name for r in result.runs] == ["fold-1", "fold-2"]
    summary = json.loads((out / "folds.json").read_text())
    accuracies = [r.metrics["test_accuracy"] for r in result.runs]
    assert summary["mean"]["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["std"]["test_accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    assert [row["fold"] for row in summary["runs"]] == [1, 2] and "val_accuracy" in summary["mean"]
    assert (out / "folds.csv").read_text().splitlines()[0].startswith("fold,run,val_accuracy,test_accuracy")
    # Each fold's config.json rebuilds its own split: the two validation folds are disjoint halves.
    vals = []
    for run in result.runs:
        arguments = json.loads((run.run_dir / "config.json").read_text())["arguments"]
        assert (arguments["folds"], arguments["fold"]) == (2, int(run.run_dir.name[-1]))
        vals.append(set(load_data(arguments["data"], **run_data_settings(arguments), log=print).val.paths))
    assert vals[0] and vals[1] and not vals[0] & vals[1] and len(vals[0] | vals[1]) == 12
    # The same command again trains nothing and summarises the same runs; other settings are refused.
    said = []
    again = kerasimg.fit(**settings, folds=2, out=str(out), log=said.append)
    assert [line for line in said if line.startswith("Fold")] == [
        f"Fold {k}/2: finished earlier in {out / f'fold-{k}'}, kept." for k in (1, 2)
    ]
    assert again.mean == result.mean
    with pytest.raises(UserError, match="holds a k-fold run with other settings"):
        kerasimg.fit(**{**settings, "epochs": 2}, folds=2, out=str(out), log=lambda *_: None)
    with pytest.raises(UserError, match="--folds trains 2 models; export one fold's run afterwards"):
        kerasimg.fit(**settings, folds=2, out=str(tmp_path / "other"), export="cv")
    # A plan experiment with folds = 2 is the same k-fold run: compare keeps its folds and shows their
    # mean and spread in its table.
    from kerasimg.experiments.compare import run_plan
    from kerasimg.experiments.plans import load_plan

    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if k != "data"]
    plan = tmp_path / "plan.toml"
    plan.write_text('name = "cv-plan"\n[[experiment]]\nname = "cv"\nfolds = 2\n' + "\n".join(lines) + "\n")
    said = []
    (row,) = run_plan(load_plan(str(plan)), tmp_path, data=settings["data"], log=said.append)
    assert not any("training in" in line for line in said), said
    assert row["experiment"] == "cv (2 folds)"
    assert row["test_accuracy"] == pytest.approx(result.mean["test_accuracy"])
    assert row["test_accuracy_std"] == pytest.approx(result.std["test_accuracy"])
    assert "± std (folds)" in (tmp_path / "results.md").read_text()
