"""Plans and kerasimg.compare: parsing with line numbers, a tiny two-experiment run, resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest

import kerasimg.experiments.compare as compare_module
from kerasimg.errors import UserError
from kerasimg.experiments.compare import run_plan
from kerasimg.experiments.plans import available_plans, load_plan

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
    assert {e.settings["recipe"] for e in plan.experiments} == {"seed"}, "the ported table keeps its recipe"


def test_recipe_plan_is_an_ablation_that_adds_one_change_at_a_time():
    from kerasimg.training import FitConfig

    plan = load_plan("recipe")
    recipes = [FitConfig(**e.settings).resolve().recipe for e in plan.experiments[:-1]]
    assert recipes[0] == FitConfig(recipe="seed").resolve().recipe
    changed = [
        {k for k, v in vars(new).items() if getattr(old, k) != v} for old, new in zip(recipes, recipes[1:])
    ]
    assert changed[0] == {"augment"} and changed[1] == {"label_smoothing"}
    assert changed[2] == {"optimizer", "weight_decay", "lr_schedule", "warmup_epochs"}
    assert changed[3] == {"ema"} and changed[4] == {"augment"} and changed[5] == {"tta"}
    assert plan.experiments[-1].settings["recipe"] == "modern"


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
        metrics = json.loads((out / row["experiment"] / "metrics.json").read_text())
        assert float(row["test_balanced_accuracy"]) == pytest.approx(metrics["test_balanced_accuracy"])
        assert float(row["test_macro_f1"]) == pytest.approx(metrics["test_macro_f1"])
    assert csv_rows[0]["reported"] == "0.5" and csv_rows[1]["reported"] == ""
    assert rows[0]["history"] and len(rows[0]["history"]) == 2
    text = (out / "results.md").read_text()
    assert text.startswith("# Plan tiny") and text.count("| small_cnn |") == 2
    assert (out / "curves.png").stat().st_size > 5_000
    assert "| balanced accuracy | macro-F1 |" in text
    page = (out / "report.html").read_text()
    assert page.count("<section>") == 2 and page.count("data:image/png;base64,") >= 9  # 4 per run + curves


@pytest.fixture
def fake_fit(monkeypatch):
    """``fit`` replaced by one that writes a finished run directory at once; records each start."""
    started = []

    def fit(config, resume=False, log=print, **kwargs):
        started.append(Path(config.out).name)
        run = Path(config.out)
        run.mkdir(parents=True, exist_ok=True)
        config_json = {**dataclasses.asdict(config), "image_size": config.image_size or 32}
        config_json.update(parameters={"total": 10}, flops_per_image=1e6)
        (run / "config.json").write_text(json.dumps(config_json))
        (run / "history.csv").write_text("epoch,val_loss,val_accuracy,epoch_seconds\n0,1.0,0.5,1.0\n")
        (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))

    monkeypatch.setattr(compare_module, "fit", fit)
    return started


def test_changed_experiment_is_trained_again_and_the_console_says_why(tmp_path, fake_fit):
    out, notes = tmp_path / "compare", []
    run_plan(load_plan(str(write_plan(tmp_path, TINY_PLAN))), out, log=notes.append)
    assert fake_fit == ["full", "last-block"]

    fake_fit.clear()
    changed = TINY_PLAN.replace("epochs = 2", "epochs = 3").replace('name = "tiny"', 'name = "tiny"\n')
    rows = run_plan(load_plan(str(write_plan(tmp_path, changed))), out, log=notes.append)
    assert fake_fit == ["full"]  # last-block is unchanged and kept
    assert any("full: settings changed since it ran (epochs: 2 then, 3 now)" in n for n in notes)
    assert [r["epochs"] for r in rows] == [3, 1]
    assert (out / "full.old-1" / "metrics.json").exists(), "the replaced run is kept, not deleted"

    fake_fit.clear()
    run_plan(load_plan(str(write_plan(tmp_path, changed))), out, data="scenes:5,2", log=notes.append)
    assert fake_fit == ["full", "last-block"]  # --data changes every experiment


def test_a_folder_named_like_an_experiment_is_never_deleted(tmp_path, fake_fit):
    out = tmp_path / "compare"
    (out / "full").mkdir(parents=True)
    (out / "full" / "thesis.txt").write_text("precious")
    with pytest.raises(UserError, match="holds files that are not a kerasimg run"):
        run_plan(load_plan(str(write_plan(tmp_path, TINY_PLAN))), out, log=lambda *a: None)
    assert (out / "full" / "thesis.txt").read_text() == "precious" and fake_fit == []


def test_a_changed_data_path_that_is_missing_deletes_nothing(tmp_path, fake_fit):
    out = tmp_path / "compare"
    run_plan(load_plan(str(write_plan(tmp_path, TINY_PLAN))), out, log=lambda *a: None)
    with pytest.raises(UserError, match="data path does not exist"):
        run_plan(load_plan(str(write_plan(tmp_path, TINY_PLAN))), out, data="missing", log=lambda *a: None)
    assert (out / "full" / "metrics.json").exists() and not list(out.glob("*.old-*"))


def test_a_second_comparison_on_one_out_is_refused_with_the_holders_pid(tmp_path, fake_fit, monkeypatch):
    plan = load_plan(str(write_plan(tmp_path, TINY_PLAN)))
    out, refused = tmp_path / "compare", []
    inner = compare_module.fit

    def fit_while_another_starts(config, **kwargs):
        with pytest.raises(UserError, match=f"in use by another kerasimg process \\(PID {os.getpid()}\\)"):
            run_plan(plan, out, log=lambda *a: None)
        refused.append(Path(config.out).name)
        return inner(config, **kwargs)

    monkeypatch.setattr(compare_module, "fit", fit_while_another_starts)
    run_plan(plan, out, log=lambda *a: None)
    assert refused == ["full", "last-block"]


def test_out_that_is_a_file_is_one_clear_error(tmp_path, fake_fit):
    out = tmp_path / "compare"
    out.write_text("not a folder")
    with pytest.raises(UserError, match="--out must be a folder.*is a file"):
        run_plan(load_plan(str(write_plan(tmp_path, TINY_PLAN))), out, log=lambda *a: None)
    assert fake_fit == []


def test_an_experiment_named_like_a_results_file_is_refused_before_training(tmp_path, fake_fit):
    path = write_plan(tmp_path, TINY_PLAN.replace('name = "last-block"', 'name = "results.md"'))
    with pytest.raises(UserError, match=f"{path}, line 18: the experiment name 'results.md' is taken"):
        run_plan(load_plan(str(path)), tmp_path / "compare", log=lambda *a: None)
    assert fake_fit == []


@pytest.mark.parametrize(
    "old, new, line, message",
    [
        ('experiments."\n', 'experiments."\nquick = 5\n', 3, "'quick' must be a table"),
        ("[defaults]\n", "defaults = 3\n[quick]\n", 4, "'defaults' must be a table"),
        (
            'backbone = "small_cnn"\nschedule = "full"',
            'backbone = 7\nschedule = "full"',
            12,
            "'backbone' must be a string",
        ),
        ("epochs = 2\n", 'epochs = "2"\n', 14, "'epochs' must be an integer"),
        ("reported = 0.5", 'reported = "92%"', 15, "'reported' must be a number"),
        ("reported = 0.5", "reported = 92", 15, r"accuracy in \[0, 1\]"),
        (
            'name = "last-block"',
            'name = "full"',
            18,
            r"duplicate experiment name 'full' \(first at line 11\)",
        ),
        ('name = "last-block"', 'name = "../up"', 18, "name='../up'"),
    ],
)
def test_plan_values_are_typed_with_file_line_and_key(tmp_path, old, new, line, message):
    path = write_plan(tmp_path, TINY_PLAN.replace(old, new, 1))
    with pytest.raises(UserError, match=message) as error:
        load_plan(str(path))
    assert f"{path}, line {line}:" in str(error.value)


def test_a_single_experiment_table_is_named_at_its_header(tmp_path):
    one = TINY_PLAN.split('\n\n[[experiment]]\nname = "last-block"')[0].replace(
        "[[experiment]]", "[experiment]"
    )
    path = write_plan(tmp_path, one)
    with pytest.raises(UserError, match=r"line 10: write each experiment as an \[\[experiment\]\] table"):
        load_plan(str(path))


def test_a_bad_quick_schedule_is_blamed_on_the_quick_line(tmp_path):
    path = write_plan(
        tmp_path,
        TINY_PLAN.replace('augment = "none"\n', 'augment = "none"\n\n[quick]\nschedule = "last-blok"\n'),
    )
    assert load_plan(str(path))  # without --quick the plan is fine
    with pytest.raises(UserError, match=f"{path}, line 11: experiment 'full': .*last-blok"):
        load_plan(str(path), quick=True)


@pytest.mark.parametrize("content", [None, "name = 'caf\xe9'\n".encode("latin-1")])
def test_plan_that_is_a_folder_or_not_utf8_is_one_clear_error(tmp_path, content):
    path = tmp_path / "plan.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match="is a folder|is not UTF-8 text"):
        load_plan(str(path))


def test_a_plan_name_must_be_a_folder_name(tmp_path):
    text = TINY_PLAN.replace('name = "tiny"', 'name = "../../victim"', 1)
    with pytest.raises(UserError, match="plan name"):
        load_plan(str(write_plan(tmp_path, text)))
