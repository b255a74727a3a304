"""TensorFlow's start-up notes stay off the console; real warnings and errors do not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import assert_quiet

import kerasimg.export as export_cli
from kerasimg import zoo as zoo_cli
from kerasimg.serving import Zoo
from kerasimg.serving.formats import FORMATS
from kerasimg.startup import is_noise


def test_the_cpu_start_up_notes_are_noise_and_real_errors_are_not():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795.1 9310 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1795.2 9310 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU ...",
        "E0000 00:00:1795.3 25253 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "E0000 00:00:1795.6 1 util.cc:131] oneDNN supports DT_UINT8 only on platforms with AVX-512. ...",
        "W0000 00:00:1795.7 1 loop_optimizer.cc:934] Skipping loop optimization for Merge node with ...",
        "W0000 00:00:1795.8 1 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.",
        "W0000 00:00:1795.9 1 flatbuffer_export.cc:3851] Skipping runtime version metadata in the model.",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    ]
    real = [
        "E0000 00:00:1795.4 111 some_op.cc:12] Resource exhausted: OOM when allocating tensor",
        "W0000 00:00:1795.5 111 loader.cc:40] Could not open /models/x: Permission denied",
    ]
    assert all(is_noise(line) for line in noise)
    assert not any(is_noise(line) for line in real)


def test_a_command_prints_only_its_own_error():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERASIMG_TF_LOGS")}
    command = [sys.executable, "-m", "kerasimg.fit", "--epochs", "0", "--weights", "none"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr == "error: --epochs must be at least 1. Received: --epochs 0\n"
    assert_quiet(done.stdout, done.stderr)


def test_fit_export_predict_evaluate_through_a_pipe_print_no_native_logs_or_escapes(tiny_scenes, tmp_path):
    """Each command as a user pipes it (`kerasimg X | tee log`): no E0000/W0000 lines, no progress redraws."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERASIMG_TF_LOGS")}
    run, zoo = tmp_path / "run", tmp_path / "zoo"
    steps = [
        ["fit", "--backbone", "small_cnn", "--weights", "none", "--data", str(tiny_scenes), "--epochs", "1"]
        + ["--image-size", "32", "--out", str(run)],
        ["export", str(run), "--zoo", str(zoo), "--name", "scenes", "--format", ",".join(FORMATS)],
        ["predict", "--model", "scenes", "--zoo", str(zoo), str(tiny_scenes / "seg_pred")],
        ["evaluate", str(run)],
    ]
    for step in steps:
        done = subprocess.run(
            [sys.executable, "-m", "kerasimg", *step], capture_output=True, text=True, env=env, timeout=600
        )
        assert done.returncode == 0, (step[0], done.stderr[-3000:])
        assert_quiet(done.stdout, done.stderr)
    # The zoo the piped export wrote: its index; export's --tta reaches the export (refused with ONNX
    # before anything is written, so no second export is paid for); removal.
    (entry,) = Zoo(zoo).entries()
    metrics = json.loads((run / "metrics.json").read_text())
    assert entry["metrics"]["test_accuracy"] == metrics["test_accuracy"] and entry["tta"] == "none"
    assert (
        entry["backbone"] == "small_cnn"
        and entry["flops_per_image"] > 0
        and len(entry["config_sha256"]) == 64
    )
    flags = ["--name", "scenes", "--zoo", str(zoo), "--tta", "flip", "--format", "savedmodel,onnx"]
    assert export_cli.main([str(run), *flags]) == 2 and Zoo(zoo).versions("scenes") == [1]
    assert zoo_cli.main(["remove", "scenes/1", "--zoo", str(zoo)]) == 0
    assert Zoo(zoo).versions("scenes") == []
    assert zoo_cli.main(["show", "nothing", "--zoo", str(zoo)]) == 2
