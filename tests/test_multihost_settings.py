"""Multihost settings fail safe: Keras's variables checked before JAX, a bounded wait, one line each.

The checks need no JAX; the waits run in fresh processes with a timeout, a few seconds each.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kerasimg.errors import UserError
from kerasimg.training import multihost
from kerasimg.training.multihost import Settings, check_port_free, read_settings

TESTS = Path(__file__).parent
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
GOOD = {
    "KERAS_DISTRIBUTION_JOB_ADDRESSES": "127.0.0.1:1234",
    "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
    "KERAS_DISTRIBUTION_PROCESS_ID": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_good_settings_are_read():
    assert read_settings(GOOD) == Settings("127.0.0.1", 1234, 2, 1)
    two = dict(GOOD, KERAS_DISTRIBUTION_JOB_ADDRESSES="a:1,b:2")
    assert read_settings(two).coordinator == "a:1"


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:notaport", "the port a number from 1 to 65535"),
        ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:70000", "the port a number from 1 to 65535"),
        ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1", "must start with process 0's host:port"),
        ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "a:1,b:2,c:3", "lists 3 addresses but"),
        ("KERAS_DISTRIBUTION_NUM_PROCESSES", "0", "a whole number of processes, at least 1"),
        ("KERAS_DISTRIBUTION_NUM_PROCESSES", "-1", "a whole number of processes, at least 1"),
        ("KERAS_DISTRIBUTION_PROCESS_ID", "5", r"0 to 1 \(KERAS_DISTRIBUTION_NUM_PROCESSES=2\)"),
        ("KERAS_DISTRIBUTION_PROCESS_ID", "abc", "this process's number"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it_and_its_value(name, value, message):
    with pytest.raises(UserError, match=message) as caught:
        read_settings(dict(GOOD, **{name: value}))
    assert f"Received: {name}={value!r}" in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_variable_is_named():
    environ = {k: v for k, v in GOOD.items() if k != "KERAS_DISTRIBUTION_PROCESS_ID"}
    with pytest.raises(UserError, match="KERAS_DISTRIBUTION_PROCESS_ID not set"):
        read_settings(environ)


def test_process_0_on_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"Process 0 cannot listen on port {port} .* Choose a free port"):
            check_port_free(Settings("127.0.0.1", port, 2, 0))
        check_port_free(Settings("127.0.0.1", port, 2, 1))  # process 1 only connects to it


def environment(process_id: int, port: int, processes: int = 2, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "XLA_FLAGS"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), env.get("PYTHONPATH", "")])
    env.update(
        KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
        KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes),
        KERAS_DISTRIBUTION_PROCESS_ID=str(process_id),
    )
    env.update(extra)
    return env


def test_the_cli_refuses_a_bad_variable_in_one_line_before_starting_jax(tiny_scenes, tmp_path):
    flags = ["--strategy", "multihost", "--backbone", "small_cnn", "--weights", "none"]
    flags += ["--data", str(tiny_scenes), "--out", str(tmp_path / "run")]
    env = environment(0, 1234, KERAS_DISTRIBUTION_NUM_PROCESSES="0")
    done = subprocess.run(
        [sys.executable, "-m", "kerasimg.fit", *flags], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: KERAS_DISTRIBUTION_NUM_PROCESSES must be")
    assert "Traceback" not in done.stderr and "restarting" not in done.stdout
    assert not (tmp_path / "run").exists()


@needs_jax
def test_process_1_without_process_0_says_whom_it_waits_for_and_stops_after_the_timeout(
    tiny_scenes, tmp_path
):
    flags = ["--strategy", "multihost", "--backbone", "small_cnn", "--weights", "none", "--image-size", "32"]
    flags += ["--data", str(tiny_scenes), "--out", str(tmp_path / "run"), "--connect-timeout", "3"]
    port = free_port()  # nobody listens: process 0 was never started
    done = subprocess.run(
        [sys.executable, "-m", "kerasimg.fit", *flags],
        env=environment(1, port, KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert f"Process 1 of 2: waiting up to 3 s for process 0 at 127.0.0.1:{port}" in done.stdout
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    waited = f"gave up after 3 s waiting for process 0 at 127.0.0.1:{port} (--connect-timeout)"
    assert error.startswith(f"error: process 1 of 2 {waited}")


def test_connect_timeout_must_be_positive():
    from kerasimg.training import FitConfig

    with pytest.raises(UserError, match="connect_timeout"):
        FitConfig(backbone="small_cnn", weights="none", connect_timeout=0).validate()
    assert multihost.DEFAULT_CONNECT_TIMEOUT == FitConfig().connect_timeout


def test_the_setup_line_is_said_in_every_multihost_run_and_in_one_process_when_not_plain():
    one = multihost.SingleProcess(SimpleNamespace(num_replicas_in_sync=1))
    assert one.setup_notes("float32", 8) == ()
    assert one.setup_notes("mixed_bfloat16", 8) == (
        "Precision mixed_bfloat16; 1 replica(s), global batch 8 (8 per replica).",
    )
    two = multihost.Cluster(0, 2, SimpleNamespace(num_model_replicas=2))
    assert two.setup_notes("float32", 3) == (
        "Precision float32; 2 replica(s) in 2 process(es), global batch 6 (3 per replica).",
    )


def test_process_0_writes_the_run_and_another_process_a_scratch_folder_it_deletes(tmp_path):
    run = tmp_path / "run"
    with multihost.Cluster(0, 2, None).writing(run) as path:
        assert path == run
    with multihost.Cluster(1, 2, None).writing(run) as path:
        assert path != run and path.is_dir()
        (path / "config.json").write_text("{}")
    assert not path.exists() and not run.exists()
    with multihost.SingleProcess(None).writing(run) as path:
        assert path == run
