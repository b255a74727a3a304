"""``fit --tracker wandb`` in W&B's offline mode: the run's own transaction log read back record by record.

Offline W&B writes everything a run logs to ``<run>/wandb/offline-run-*/run-<id>.wandb`` (the file
``wandb sync`` uploads): a LevelDB-style log of protobuf ``Record`` messages. The test reads that file, so
it checks what W&B would upload, not what kerasimg meant to send.
"""

import json
import struct
from pathlib import Path

import pytest
from helpers import make_separable, tiny_config

import kerasimg
from kerasimg.errors import UserError

pytest.importorskip("wandb", reason="wandb is not installed (pip install 'kerasimg[wandb]')")
from wandb.proto import wandb_internal_pb2  # noqa: E402

# LevelDB log blocks; each chunk: crc32, length, type (1 full, 2 first, 3 middle, 4 last)
_BLOCK, _HEADER = 32768, 7


def _records(path: Path) -> list:
    """Every protobuf record of one ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pending, position = [], b"", _HEADER
    while position + _HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _HEADER])
        if length == 0 and kind == 0:  # padding to the end of the block
            position += left_in_block
            continue
        pending += data[position + _HEADER : position + _HEADER + length]
        position += _HEADER + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _of_kind(records, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """One tiny run logged offline: (run folder, its W&B records)."""
    root = tmp_path_factory.mktemp("wandb")
    data = make_separable(root / "data", per_class=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("WANDB_DIR", raising=False)
        result = kerasimg.fit(**vars(tiny_config(data, root / "run", tracker="wandb")), log=lambda *_: None)
    (log,) = result.run_dir.glob("wandb/offline-run-*/run-*.wandb")  # W&B's files stay in the run folder
    return result.run_dir, _records(log)


def test_config_metrics_and_summary_reach_the_run(offline_run):
    run_dir, records = offline_run
    (started,) = _of_kind(records, "run")
    assert started.display_name == run_dir.name
    assert started.run_id == (run_dir / "wandb_run_id.txt").read_text().strip()
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["arguments"] == json.loads((run_dir / "config.json").read_text())["arguments"]

    steps = {}
    for history in _of_kind(records, "history"):
        items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in history.item}
        if "val_accuracy" in items:
            steps[items["_step"]] = items["val_accuracy"]
    assert sorted(steps) == [0, 1]  # one row per epoch of the 2, at the epoch's step

    summary = {}
    for update in _of_kind(records, "summary"):
        summary.update({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in update.update})
    final = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(final["test_accuracy"])
    assert _of_kind(records, "exit"), "the W&B run was not finished"


def test_the_run_files_are_one_artifact(offline_run):
    run_dir, records = offline_run
    (artifact,) = _of_kind(records, "artifact")
    assert artifact.name == run_dir.name and artifact.type == "kerasimg-run"
    names = {entry.path for entry in artifact.manifest.contents}
    assert {"config.json", "metrics.json", "history.csv", "report.html", "model.keras"} <= names


def test_resume_continues_the_same_wandb_run(offline_run, monkeypatch):
    from kerasimg.training.run import Run
    from kerasimg.training.trackers import open_tracker

    run_dir, _ = offline_run
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = open_tracker("wandb", Run(run_dir), {"epochs": 3}, resume=True)
    tracker.callbacks()[0].on_epoch_end(2, {"loss": 0.25})
    tracker.finish({"test_accuracy": 1.0}, [])
    logs = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    # A second session of the same run: wandb names each session's log after the run id. (Its "run"
    # record is not always in the resumed log by the time finish() returns on a loaded machine.)
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    assert [log.name for log in logs] == [f"run-{run_id}.wandb"] * 2


def test_no_login_stops_before_training_with_the_remedy(tmp_path, monkeypatch):
    import wandb

    wandb.teardown()  # W&B reads its environment once per process: forget the offline runs above
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no saved login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    data = make_separable(tmp_path / "data", per_class=2)
    with pytest.raises(UserError, match=r"W&B did not start a run .*WANDB_MODE=offline"):
        kerasimg.fit(**vars(tiny_config(data, tmp_path / "run", tracker="wandb")), log=lambda *_: None)
    assert not (tmp_path / "run" / "history.csv").exists()
