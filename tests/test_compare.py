"""Plans and kerasimg.compare: parsing with line numbers, a tiny two-experiment run, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import kerasimg.training.compare as compare_module
from kerasimg.errors import UserError
from kerasimg.training.compare import run_plan
from kerasimg.training.plans import available_plans, load_plan

TINY_PLAN = """\
name = "tiny"
description = "Two small experiments."

[defaults]
weights = "none"
image_size = 32
batch_size = 8
augment = "none"

[[experiment]]
name = "full"
backbone = "small_cnn"
schedule = "full"
epochs = 2
reported = 0.5

[[experiment]]
name = "last-block"
backbone = "small_cnn"
schedule = "last-block"
epochs = 1
"""


def write_plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_seed_plan_holds_the_ported_experiments_and_a_quick_variant():
    assert "seed" in available_plans()
    plan = load_plan("seed")
    by_name = {e.name: e for e in plan.experiments}
    assert len(plan.experiments) == 6
    assert by_name["resnet50-linear-probe"].settings["epochs"] == 10
    assert by_name["resnet50-last-block"].settings["schedule"] == "probe-then-last:10,5"
    assert by_name["vit-mlp-head"].settings["head"] == "mlp" and by_name["vit-mlp-head"].reported == 0.949
    assert by_name["densenet201-last-block"].settings["backbone"] == "densenet201"
    assert all(e.settings["image_size"] == 64 for e in load_plan("seed", quick=True).experiments)
    quick = {e.name: e for e in load_plan("seed", quick=True).experiments}
    assert quick["vit-mlp-head"].settings["backbone"] == "vit_tiny16"
    assert quick["resnet50-last-block"].settings["schedule"] == "probe-then-last:1,1"


@pytest.mark.parametrize(
    "old, new, line, message",
    [
        (
            'backbone = "small_cnn"\nschedule = "full"',
            'backbone = "resnet5"\nschedule = "full"',
            12,
            "resnet50",
        ),
        ('schedule = "last-block"', 'schedule = "last-blok"', 20, "last-blok"),
        ("epochs = 1\n", "epochs = 1\nlearning_rate = 0.1\n", 22, "learning_rate"),
    ],
)
def test_bad_plan_names_the_line(tmp_path, old, new, line, message):
    path = write_plan(tmp_path, TINY_PLAN.replace(old, new, 1))
    with pytest.raises(UserError, match=message) as error:
        load_plan(str(path))
    assert f"{path}, line {line}:" in str(error.value)


def test_unknown_plan_lists_the_shipped_ones():
    with pytest.raises(UserError, match="seed"):
        load_plan("no-such-plan")


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_plan_runs_end_to_end_and_resumes_skipping_finished_experiments(
    tiny_scenes, tmp_path, monkeypatch
):
    plan = load_plan(str(write_plan(tmp_path, TINY_PLAN)))
    out = tmp_path / "compare"
    real_fit, started = compare_module.fit, []

    def crash_on_second(config, **kwargs):
        started.append(Path(config.out).name)
        if len(started) == 2:
            raise KeyboardInterrupt
        return real_fit(config, **kwargs)

    monkeypatch.setattr(compare_module, "fit", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, out, data=str(tiny_scenes), log=lambda *a: None)
    assert len(read_rows(out / "results.csv")) == 1  # the finished experiment is already reported

    started.clear()
    monkeypatch.setattr(
        compare_module, "fit", lambda config, **kw: started.append(config.out) or real_fit(config, **kw)
    )
    rows = run_plan(plan, out, data=str(tiny_scenes), log=lambda *a: None)
    assert [Path(s).name for s in started] == ["last-block"]  # "full" was not trained again

    csv_rows = read_rows(out / "results.csv")
    assert [r["experiment"] for r in csv_rows] == ["full", "last-block"]
    assert [int(r["epochs"]) for r in csv_rows] == [2, 1]
    for row in csv_rows:
        assert 0 <= float(row["test_accuracy"]) <= 1 and 0 <= float(row["best_val_accuracy"]) <= 1
        assert int(row["params"]) > 0 and float(row["gflops"]) > 0 and float(row["images_per_sec"]) > 0
    assert csv_rows[0]["reported"] == "0.5" and csv_rows[1]["reported"] == ""
    assert rows[0]["history"] and len(rows[0]["history"]) == 2
    text = (out / "results.md").read_text()
    assert text.startswith("# Plan tiny") and text.count("| small_cnn |") == 2
    assert (out / "curves.png").stat().st_size > 5_000
