"""``--strategy multihost``: processes on 127.0.0.1 train one model under JAX, as machines would.

One fixture starts every process at once (they wait on each other, not on the CPU):
two processes of one CPU device each, one process with two fake CPU devices (the same
global batch of 8), and two processes given different seeds. Each process of a run
has its own working directory and a relative ``--out``, so a run directory in
process 1's shows that it wrote one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import serve_in_fresh_process

from kerasimg.diagnose.predictions import read_predictions
from kerasimg.errors import UserError
from kerasimg.serving.signatures import decode_batch
from kerasimg.training import FitConfig, multihost
from kerasimg.training.reports import read_history

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install kerasimg[jax])"
)

TESTS = Path(__file__).parent
TIMEOUT = 300  # a hang fails the test instead of the suite
SETTINGS = dict(
    backbone="small_cnn",
    weights="none",
    epochs=2,
    # Per device: a global batch of 8 in both runs, so every split (30 train, 6 val, 18 test
    # images) ends in a partial global batch that the processes fill.
    batch_size=4,
    image_size=32,
    seed=0,
    # Flips make the run differ run to run under multihost (not between its processes): see README.
    augment="none",
    strategy="multihost",
    out="run",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(process_id: int | None = None, processes: int = 2, port: int = 0, devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "XLA_FLAGS"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if process_id is not None:
        env["KERAS_DISTRIBUTION_JOB_ADDRESSES"] = f"127.0.0.1:{port}"
        env["KERAS_DISTRIBUTION_NUM_PROCESSES"] = str(processes)
        env["KERAS_DISTRIBUTION_PROCESS_ID"] = str(process_id)
    return env


def worker(folder: Path, settings: dict, env: dict) -> subprocess.Popen:
    """``tests/multihost_worker.py`` in ``folder``: kerasimg.fit under JAX, keeping its final weights."""
    folder.mkdir(parents=True)
    command = [
        sys.executable,
        str(TESTS / "multihost_worker.py"),
        str(folder / "weights"),
        json.dumps(settings),
    ]
    return subprocess.Popen(
        command,
        cwd=folder,
        env={**env, "KERAS_BACKEND": "jax"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture(scope="module")
def launched(tmp_path_factory, tiny_scenes):
    root = tmp_path_factory.mktemp("multihost")
    data = dict(SETTINGS, data=str(tiny_scenes))
    port, seeds_port = free_port(), free_port()
    processes = {
        # Process 0 exports too: from a JAX process, through a TensorFlow one.
        "p0": worker(
            root / "p0", dict(data, export="scenes", zoo=str(root / "zoo")), environment(0, port=port)
        ),
        "p1": worker(root / "p1", data, environment(1, port=port)),
        "devices": worker(root / "devices", data, environment(devices=2)),
    }
    # Process 0 as a user starts it, without KERAS_BACKEND: the CLI restarts itself under JAX.
    folder = root / "seed0"
    folder.mkdir()
    processes["seed0"] = subprocess.Popen(
        [sys.executable, "-m", "kerasimg.fit", *to_flags(data), "--seed", "0"],
        cwd=folder,
        env=environment(0, port=seeds_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    processes["seed1"] = worker(root / "seed1", dict(data, seed=1), environment(1, port=seeds_port))
    results = {name: finished(process) for name, process in processes.items()}
    return root, results


def to_flags(settings: dict) -> list[str]:
    flags = []
    for key, value in settings.items():
        if key != "seed":
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def weights(root: Path, run: str, process_id: int = 0) -> list[np.ndarray]:
    saved = np.load(root / run / "weights" / f"process-{process_id}.npz")
    return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def test_two_processes_train_the_same_model_as_one_process_with_two_devices(launched):
    root, results = launched
    for name in ("p0", "p1", "devices"):
        assert results[name][0] == 0, f"{name}: {results[name][2][-3000:]}"
    first, second, single = weights(root, "p0"), weights(root, "p1", 1), weights(root, "devices")
    assert len(first) == len(single) > 0
    for a, b, c in zip(first, second, single):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-5, rtol=0)
    assert not np.allclose(first[0], 0)  # trained weights, not an empty model
    assert "Each process reads and decodes its own 4 images of every global batch of 8" in results["p0"][1]


def test_each_process_predicts_its_share_of_the_test_split_and_process_0_reports_all(launched):
    root, _ = launched
    shared, alone = (read_predictions(root / run / "run" / "predictions.csv") for run in ("p0", "devices"))
    assert len(shared) == 18 and shared.files == alone.files  # no image lost or repeated, in order
    np.testing.assert_allclose(shared.probabilities, alone.probabilities, atol=1e-4)
    metrics = json.loads((root / "p0" / "run" / "metrics.json").read_text())
    assert metrics["test_examples"] == 18
    # The validation loss is the mean over the 6 images, not over the 8 places of their global batch.
    histories = [read_history(root / run / "run" / "history.csv") for run in ("p0", "devices")]
    np.testing.assert_allclose(
        [r["val_loss"] for r in histories[0]], [r["val_loss"] for r in histories[1]], rtol=1e-4
    )


def test_process_0_alone_writes_the_run_and_records_the_global_batch(launched):
    root, results = launched
    run = root / "p0" / "run"
    assert {"config.json", "history.csv", "metrics.json", "model.keras", "report.html"} <= {
        p.name for p in run.iterdir()
    }
    assert not (root / "p1" / "run").exists()
    config = json.loads((run / "config.json").read_text())
    resolved = config["resolved"]
    assert (resolved["processes"], resolved["replicas"], resolved["global_batch_size"]) == (2, 2, 8)
    assert resolved["backend"] == "jax" and "jax" in config["versions"]
    assert "2 replica(s) in 2 process(es), global batch 8 (4 per replica)" in results["p0"][1]
    assert "process 0 wrote" not in results["p0"][1]
    single = json.loads((root / "devices" / "run" / "config.json").read_text())["resolved"]
    assert (single["processes"], single["replicas"], single["global_batch_size"]) == (1, 2, 8)


def test_the_export_is_a_tensorflow_saved_model_a_fresh_process_serves(launched, tmp_path):
    root, _ = launched
    versions = sorted((root / "zoo" / "scenes").iterdir())
    assert [v.name for v in versions] == ["1"]
    path = versions[0]
    assert b"XlaCallModule" not in (path / "saved_model.pb").read_bytes()
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(tf.io.encode_jpeg(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).numpy())
    served = np.array(serve_in_fresh_process(path, files, tmp_path)["probabilities"])
    model = keras.saving.load_model(root / "p0" / "run" / "model.keras")  # this process: TensorFlow
    pixels = decode_batch(tf.constant([f.read_bytes() for f in files]), 32)
    expected = keras.ops.convert_to_numpy(model(pixels, training=False))
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)


def test_processes_with_different_seeds_stop_at_once_saying_so(launched):
    _, results = launched
    code, out, err = results["seed0"]
    assert code == 2, err[-3000:]
    assert "restarting with KERAS_BACKEND=jax" in out
    assert "needs the same --seed; the processes have [0, 1]" in err
    code, _, err = results["seed1"]
    assert code != 0 and "needs the same --seed; the processes have [0, 1]" in err


def test_a_resumed_run_continues_from_process_0s_state_on_every_process(launched):
    root, _ = launched
    port = free_port()
    run = str(root / "p0" / "run")
    resumed = {
        process_id: worker(
            root / f"resume{process_id}", {"resume": run, "epochs": 3}, environment(process_id, port=port)
        )
        for process_id in (0, 1)
    }
    for process_id, process in resumed.items():
        code, _, err = finished(process)
        assert code == 0, f"process {process_id}: {err[-3000:]}"
    history = (root / "p0" / "run" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]
    for a, b in zip(weights(root, "resume0"), weights(root, "resume1", 1)):
        np.testing.assert_array_equal(a, b)
    assert not (root / "resume1" / "run").exists()


def test_missing_jax_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"not installed: pip install kerasimg\[jax\]"):
        multihost.restart_under_jax("kerasimg.fit", [])


def test_multihost_under_the_tensorflow_backend_says_how_to_choose_jax(tmp_path):
    with pytest.raises(UserError, match="needs Keras's JAX backend.*KERAS_BACKEND=jax"):
        multihost.start()
    FitConfig(strategy="multihost").validate()  # a valid choice; only the backend is wrong here


def test_an_export_from_the_jax_backend_passes_every_choice_to_the_tensorflow_process(monkeypatch, tmp_path):
    from kerasimg.serving import export as export_module

    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=f"Exported {tmp_path}/zoo/m/1 (verified)\n")

    monkeypatch.setattr(export_module.keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(export_module.subprocess, "run", run)
    path = export_module.export_run(tmp_path / "run", "m", tmp_path / "zoo", tta="flip", calibration_images=7)
    assert path == tmp_path / "zoo" / "m" / "1"
    (command,) = commands
    assert command[command.index("--tta") + 1] == "flip"
    assert command[command.index("--calibration-images") + 1] == "7"
    assert command[command.index("--name") + 1] == "m"
