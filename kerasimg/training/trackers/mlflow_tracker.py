"""``--tracker mlflow``: MLflow's tracking store (``MLFLOW_TRACKING_URI``, else MLflow's own default)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import keras

from kerasimg.errors import UserError
from kerasimg.training.trackers.registry import Tracker, import_package, register_tracker


def flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` as ``{"a.b": "1"}``: MLflow's parameters are flat strings."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:6000]  # MLflow's limit on a parameter's value
    return flat


class _MlflowCallback(keras.callbacks.Callback):
    def __init__(self, client, run_id: str):
        super().__init__()
        self.client, self.run_id = client, run_id

    def on_epoch_end(self, epoch, logs=None):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, epoch)
            for key, value in (logs or {}).items()
            if isinstance(value, (int, float))
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)


class MlflowTracker(Tracker):
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return [_MlflowCallback(self.client, self.run_id)]

    def finish(self, metrics: dict, files: list[Path]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final = [Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))]
        if final:
            self.client.log_batch(self.run_id, metrics=final)
        for path in files:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id)


def _check_reachable(uri: str) -> None:
    """An HTTP tracking server answers its health check, or the run stops naming the URI."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            pass
    except (urllib.error.URLError, OSError) as error:
        raise UserError(
            f"The MLflow tracking server at {uri} does not answer ({error}); start it or set "
            "MLFLOW_TRACKING_URI to one that does."
        ) from None


@register_tracker
def mlflow(run, params: dict, resume: bool) -> Tracker:
    """MLflow: the run is named after the run folder; ``--resume`` continues the same MLflow run."""
    mlflow_module = import_package("mlflow")
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_module.get_tracking_uri()
    _check_reachable(uri)
    client = MlflowClient(uri)
    id_path = run.tracker_id_path("mlflow")
    run_id = id_path.read_text().strip() if resume and id_path.exists() else None
    if run_id is None:
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "kerasimg")
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id, run_name=run.path.name).info.run_id
        from kerasimg.files import write_text

        write_text(id_path, run_id + "\n")
        flat = [mlflow_module.entities.Param(k, v) for k, v in flatten(params).items()]
        for start in range(0, len(flat), 100):  # MLflow takes at most 100 parameters a batch
            client.log_batch(run_id, params=flat[start : start + 100])
    else:
        client.update_run(run_id, status="RUNNING")
    return MlflowTracker(client, run_id)
