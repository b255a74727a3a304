"""``fit --tracker mlflow``: a real MLflow tracking server (``.ci/run``'s or this module's), read back.

The server is the one ``KERASIMG_TEST_MLFLOW_URI`` names (``.ci/run`` starts it); without it, a session
fixture starts ``mlflow server`` on 127.0.0.1 with a SQLite store in a temp folder, so the test never mocks
MLflow and never skips silently.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import make_separable, tiny_config

import kerasimg
from kerasimg.errors import UserError

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'kerasimg[mlflow]')")
from mlflow.tracking import MlflowClient  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(uri: str, process, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {uri} did not answer in {seconds} s")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The tracking server's URI: .ci/run's, or one started here and stopped at the end."""
    if uri := os.environ.get("KERASIMG_TEST_MLFLOW_URI"):
        yield uri
        return
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder}/mlflow.db",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(uri, process)
        yield uri
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def tracked_run(mlflow_server, tmp_path_factory, monkeypatch_module):
    """One tiny run logged to the server: (run folder, MLflow client, MLflow run)."""
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    root = tmp_path_factory.mktemp("tracked")
    data = make_separable(root / "data", per_class=4)
    result = kerasimg.fit(
        **vars(tiny_config(data, root / "run", epochs=2, tracker="mlflow")), log=lambda *_: None
    )
    client = MlflowClient(mlflow_server)
    run_id = (result.run_dir / "mlflow_run_id.txt").read_text().strip()
    return result.run_dir, client, client.get_run(run_id)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_params_are_the_flattened_config(tracked_run):
    run_dir, _, run = tracked_run
    config = json.loads((run_dir / "config.json").read_text())
    assert run.info.run_name == run_dir.name
    assert run.data.params["arguments.backbone"] == "small_cnn" == config["arguments"]["backbone"]
    assert run.data.params["arguments.tracker"] == "mlflow"


def test_metrics_per_epoch_and_final(tracked_run):
    run_dir, client, run = tracked_run
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]  # one value per epoch of the 2
    final = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(final["test_accuracy"])
    assert run.data.metrics["test_loss"] == pytest.approx(final["test_loss"])
    assert run.info.status == "FINISHED"


def test_files_are_artifacts(tracked_run):
    run_dir, client, run = tracked_run
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.json", "history.csv", "report.html"} <= names
    assert any(name.endswith(".keras") for name in names)


def test_a_local_sqlite_store_and_a_resume_make_one_mlflow_run(tracked_run, tmp_path, monkeypatch):
    """No server, a SQLite file as a laptop has: the tracker logs the fixture's run folder there (no
    second training), and a resumed run continues the same MLflow run rather than starting another."""
    import shutil

    from kerasimg.training.run import Run
    from kerasimg.training.trackers import open_tracker

    run = Run(shutil.copytree(tracked_run[0], tmp_path / "run"))
    run.tracker_id_path("mlflow").unlink()  # the copy has not been logged to this store
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the store's artifacts land in ./mlruns
    for epoch, resume in ((0, False), (1, True)):
        tracker = open_tracker("mlflow", run, {"backbone": "small_cnn", "epochs": epoch + 1}, resume=resume)
        tracker.callbacks()[0].on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5})
        tracker.finish({"test_accuracy": 0.5 + epoch / 4}, [run.history_path, run.report_path])
    client = MlflowClient(uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("kerasimg").experiment_id])
    assert logged.info.run_name == "run" and logged.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "loss")] == [0, 1]
    assert logged.data.metrics["test_accuracy"] == 0.75 and logged.data.params["backbone"] == "small_cnn"
    assert {"history.csv", "report.html"} <= {f.path for f in client.list_artifacts(logged.info.run_id)}


def test_unreachable_server_stops_before_training(tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = make_separable(tmp_path / "data", per_class=2)
    with pytest.raises(UserError, match=rf"The MLflow tracking server at {uri} does not answer"):
        kerasimg.fit(**vars(tiny_config(data, tmp_path / "run", tracker="mlflow")), log=lambda *_: None)
    assert not (tmp_path / "run" / "history.csv").exists()


def test_unknown_tracker_is_refused(tmp_path):
    with pytest.raises(Exception, match="wandbb"):
        kerasimg.fit(**vars(tiny_config(tmp_path, tmp_path / "run", tracker="wandbb")))
