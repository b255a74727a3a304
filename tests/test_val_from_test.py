"""--val-from test: one line says test accuracy is optimistic; metrics.json, compare, ZOO.md mark it."""

from __future__ import annotations

import contextlib
import io
import json
import types

import pytest

import kerasimg.fit as fit_cli
from kerasimg import selection
from kerasimg.experiments.compare import summarize, write_results
from kerasimg.serving.zoo import render_table


@pytest.fixture(scope="module")
def val_on_test_run(tiny_scenes, tmp_path_factory):
    """One tiny run validated on the test split, and what the CLI printed."""
    out = tmp_path_factory.mktemp("val-on-test") / "run"
    printed = io.StringIO()  # capsys is function-scoped; this run is shared by the module
    with contextlib.redirect_stdout(printed):
        code = fit_cli.main(
            [
                "--backbone", "small_cnn", "--weights", "none", "--data", str(tiny_scenes),
                "--epochs", "1", "--batch-size", "16", "--image-size", "32", "--val-from", "test",
                "--out", str(out),
            ]
        )  # fmt: skip
    assert code == 0
    return out, printed.getvalue()


def test_the_cli_prints_one_line_that_the_test_accuracy_is_optimistic(val_on_test_run):
    _, printed = val_on_test_run
    lines = printed.splitlines()
    assert lines.count(selection.NOTE) == 1
    assert selection.NOTE.startswith("Note: --val-from test picks the best epoch on the test split")
    assert "optimistic" in selection.NOTE and "\n" not in selection.NOTE
    assert lines.index(selection.NOTE) < next(
        i for i, line in enumerate(lines) if line.startswith("Test accuracy")
    )


def test_metrics_json_marks_the_run(val_on_test_run):
    run_dir, _ = val_on_test_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["selected_on_test"] is True


def test_compare_table_marks_the_run_and_explains_the_mark(val_on_test_run, tmp_path):
    run_dir, _ = val_on_test_run
    marked = summarize("probe", run_dir)
    plain = {**marked, "experiment": "held-out", "selected_on_test": ""}
    assert marked["selected_on_test"] == "yes"
    write_results([marked, plain], tmp_path, types.SimpleNamespace(name="p", description=""))
    table = (tmp_path / "results.md").read_text()
    rows = [cells(line) for line in table.splitlines() if line.startswith("| ")]
    column = rows[0].index("val = test")
    assert {row[0]: row[column] for row in rows[1:]} == {"probe": "yes", "held-out": ""}
    assert "`val = test`: the best epoch was chosen on the test split" in table
    assert "selected_on_test" in (tmp_path / "results.csv").read_text().splitlines()[0]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def zoo_entry(name: str, optimistic: bool | None) -> dict:
    metrics = {"test_accuracy": 0.9123}
    if optimistic is not None:
        metrics["selected_on_test"] = optimistic
    return {"name": name, "version": 1, "metrics": metrics, "class_names": ["a", "b"], "parameters": 10}


def test_zoo_table_marks_optimistic_accuracies_and_explains_only_when_needed():
    table = render_table([zoo_entry("probe", True), zoo_entry("held", False), zoo_entry("old", None)])
    rows = {cells(line)[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert "| 91.23% (val = test) |" in rows["probe"]
    assert "| 91.23% |" in rows["held"] and "| 91.23% |" in rows["old"]
    assert table.rstrip().endswith("so that test accuracy is optimistic, not a held-out estimate.")
    assert "val = test" not in render_table([zoo_entry("held", False)])


def test_runs_from_before_the_flag_fall_back_to_their_config():
    assert selection.selected_on_test({}, {"val_from": "test"}) is True
    assert selection.selected_on_test({}, {"val_from": "train"}) is False
    assert selection.selected_on_test({"selected_on_test": False}, {"val_from": "test"}) is False


def test_export_carries_the_mark_into_the_zoo_index(val_on_test_run, monkeypatch):
    from kerasimg.serving import export as export_module

    run_dir, _ = val_on_test_run
    seen = {}
    monkeypatch.setattr(
        export_module, "export_model", lambda *args, **kwargs: seen.update(args[5]) or "exported"
    )
    export_module.export_run(run_dir, "probe", "unused-zoo")
    assert seen["metrics"]["selected_on_test"] is True
