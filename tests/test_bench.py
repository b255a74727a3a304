"""kerasimg.bench and kerasimg.models list: the numbers are real and the JSON is complete."""

from __future__ import annotations

import json
from pathlib import Path

from kerasimg import bench
from kerasimg.models import __main__ as models_cli


def test_bench_reports_every_backbone_and_mode_as_table_and_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = bench.main(
        [
            "--backbone",
            "small_cnn",
            "--mode",
            "train",
            "--mode",
            "infer",
            "--mode",
            "serve",
            "--image-size",
            "32",
            "--batch-size",
            "4",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--json",
            str(path),
        ]
    )
    assert code == 0
    rows = json.loads(path.read_text())
    assert [r["mode"] for r in rows] == ["train", "infer", "serve"]
    for row in rows:
        # Keras-model rows say whether BatchNorm was folded; the serve row times an exported file.
        assert set(row) - {"fold_bn"} == {
            "backbone",
            "mode",
            "format",
            "image_size",
            "batch_size",
            "precision",
            "images_per_sec",
            "step_seconds_median",
            "params",
            "step_flops_per_image",
            "gflop_per_sec",
            "ceiling_gflop_per_sec",
            "of_ceiling",
        }
        assert row["images_per_sec"] > 0
        assert abs(row["images_per_sec"] * row["step_seconds_median"] - 4) < 0.05
        assert row["image_size"] == 32 and row["precision"] == "float32"
        # Achieved GFLOP/s is the step's FLOPs times images/s; the fraction is of the run's one ceiling.
        achieved = row["step_flops_per_image"] * row["images_per_sec"] / 1e9
        assert abs(row["gflop_per_sec"] - achieved) <= 0.01 + 1e-3 * achieved
        assert abs(row["of_ceiling"] - row["gflop_per_sec"] / row["ceiling_gflop_per_sec"]) < 1e-3
    train, infer, serve = rows
    assert train["fold_bn"] is infer["fold_bn"] is False and "fold_bn" not in serve
    # A train step is three forward passes; inference and serving one.
    assert (
        train["step_flops_per_image"]
        == 3 * infer["step_flops_per_image"]
        == 3 * serve["step_flops_per_image"]
    )
    assert all(r["ceiling_gflop_per_sec"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "small_cnn" in out and "GFLOP/s" in out and "of ceil" in out


def test_models_list_json_counts_parameters_from_built_models(capsys):
    assert models_cli.main(["list", "--json", "--verify", "--backbone", "small_cnn"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # Four stages of two 3x3 convolutions (no bias) and two batch norms (4 vectors each).
    widths, params, previous = (32, 64, 128, 256), 0, 3
    for width in widths:
        params += 9 * previous * width + 9 * width * width + 2 * 4 * width
        previous = width
    assert row["parameters"] == params
    assert row["stages"] == ["block1", "block2", "block3", "block4"] and row["preprocessing"] == "tf"


def built_in_backbones() -> list[str]:
    """The registry as a fresh process has it: other tests register scaled EfficientNets in this one."""
    import subprocess
    import sys

    code = "from kerasimg.models import list_backbones; print(*list_backbones())"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def test_stored_facts_cover_the_registry_and_match_cheap_built_models(tmp_path, capsys, monkeypatch):
    from kerasimg import model_list

    assert list(model_list.stored_facts()) == built_in_backbones()
    sample = ["--backbone", "small_cnn", "--backbone", "mobilenetv3_small"]
    assert models_cli.main(["list", "--verify", *sample]) == 0
    assert "stale" not in capsys.readouterr().err
    # A wrong stored count is named, and the exit code says so.
    rows = json.loads(model_list.FACTS.read_text())
    next(r for r in rows if r["name"] == "small_cnn")["parameters"] += 1
    (tmp_path / "facts.json").write_text(json.dumps(rows))
    monkeypatch.setattr(model_list, "FACTS", tmp_path / "facts.json")
    assert models_cli.main(["list", "--verify", "--backbone", "small_cnn"]) == 1
    err = capsys.readouterr().err
    assert "stale: small_cnn: parameters is 1175136, facts.json says 1175137" in err


def test_models_list_prints_every_backbone_without_importing_tensorflow(tmp_path):
    """`kerasimg models list` as the console script runs it: static facts, no TensorFlow."""
    import os
    import subprocess
    import sys

    from kerasimg import model_list

    script = tmp_path / "kerasimg"  # the console script's name is what defers the import
    script.write_text(
        "import sys\nfrom kerasimg.commands import main\nmain()\nprint('tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, str(script), "models", "list"], capture_output=True, text=True, env=env, check=True
    )
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:-2]] == list(model_list.stored_facts()) and lines[
        -1
    ] == "False"
    assert lines[-2].startswith("Backbones without a classification head")


def test_bench_serve_times_each_format_in_its_runtime_beside_keras(tmp_path):
    path = tmp_path / "bench.json"
    argv = ["--backbone", "small_cnn", "--mode", "infer", "--mode", "serve", "--image-size", "32"]
    argv += ["--format", "litert-int8", "--batch-size", "1", "--batch-size", "3", "--steps", "1"]
    assert bench.main([*argv, "--warmup", "0", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    # The SavedModel is always exported, so it is timed beside the asked-for format.
    assert [(r["mode"], r["format"], r["batch_size"]) for r in rows] == [
        ("infer", "keras", 1),
        ("infer", "keras", 3),
        ("serve", "savedmodel", 1),
        ("serve", "savedmodel", 3),
        ("serve", "litert-int8", 1),
        ("serve", "litert-int8", 3),
    ]
    assert all(r["images_per_sec"] > 0 for r in rows)


def test_bench_times_folded_and_unfolded_batchnorm_in_one_run(tmp_path):
    path = tmp_path / "bench.json"
    argv = ["--backbone", "small_cnn", "--mode", "train", "--image-size", "32", "--batch-size", "2"]
    assert (
        bench.main([*argv, "--fold-bn", "off", "--fold-bn", "on", "--steps", "1", "--json", str(path)]) == 0
    )
    off, on = json.loads(path.read_text())
    assert (off["fold_bn"], on["fold_bn"]) == (False, True)
    assert "vs_unfolded" not in off
    assert on["vs_unfolded"] == round(on["images_per_sec"] / off["images_per_sec"], 3)
    # FLOPs are counted on the standard model, so the two rows are compared on equal terms.
    assert on["step_flops_per_image"] == off["step_flops_per_image"]
