"""What a hostile-but-realistic user does to the zoo, exports and runs, and what they get back."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import CrashAfterEpoch, bomb_png, encoded, oriented_jpeg, tiny_config

import kerasimg.export as export_cli
import kerasimg.fit as fit_cli
import kerasimg.predict as predict_cli
from kerasimg import zoo as zoo_cli
from kerasimg.errors import UserError
from kerasimg.files import write_text
from kerasimg.models import build_classifier
from kerasimg.serving import Zoo, export_model, export_run
from kerasimg.training import callbacks, fit, load_run_config
from kerasimg.training.reports import read_history
from kerasimg.training.run import Run

CLASSES = ["cat", "dog", "fish"]


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def quiet(*_):
    pass


def fit_args(data, out, *extra):
    return [
        "--backbone", "small_cnn", "--weights", "none", "--data", str(data), "--epochs", "1",
        "--batch-size", "8", "--image-size", "32", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def zoo_export(tmp_path_factory):
    """A tiny model exported under umask 022: (model, version folder, zoo root)."""
    keras.utils.set_random_seed(0)
    model = build_classifier("small_cnn", len(CLASSES), image_size=32, weights="none")
    zoo = tmp_path_factory.mktemp("hardened-zoo") / "zoo"
    with umask(0o022):
        path = export_model(model, CLASSES, 32, "pets", zoo)
    return model, path, zoo


@pytest.fixture(scope="module")
def finished_run(tiny_scenes, tmp_path_factory):
    """A finished one-epoch run written under umask 022."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with umask(0o022):
        assert fit_cli.main(fit_args(tiny_scenes, out)) == 0
    return out


# 1. Nothing outside the zoo can be deleted.


@pytest.mark.parametrize("target", ["..", "../7", ".", "7", "/etc", "pets/../..", "outside"])
def test_zoo_remove_refuses_every_name_that_leaves_the_zoo(target, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    for folder in (tmp_path / "7", zoo / "7", zoo / "pets" / "1", tmp_path / "victim" / "3"):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("precious")
    (zoo / "outside").symlink_to(tmp_path / "victim")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert zoo_cli.main(["remove", target, "--zoo", str(zoo)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("command", ["show", "remove"])
def test_zoo_names_are_checked_by_the_export_rule(command, tmp_path, capsys):
    assert zoo_cli.main([command, "../x", "--zoo", str(tmp_path)]) == 2
    assert "zoo model name uses letters" in capsys.readouterr().err


def test_all_digit_and_traversing_names_are_refused_for_export(zoo_export, tmp_path):
    model, _, _ = zoo_export
    for name in ("7", "..", "a/b", ""):
        with pytest.raises(UserError, match="zoo model name"):
            export_model(model, CLASSES, 32, name, tmp_path)
    assert not any(tmp_path.iterdir())


def test_predict_resolves_a_model_name_inside_the_zoo(zoo_export, tmp_path, capsys):
    _, path, zoo = zoo_export
    image = tmp_path / "a.jpg"
    image.write_bytes(encoded(np.zeros((40, 40, 3), np.uint8), "JPEG"))
    assert predict_cli.main(["--model", "pets/1", "--zoo", str(zoo), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0][0] in CLASSES
    assert predict_cli.main(["--model", "../pets", "--zoo", str(zoo), str(image)]) == 2
    assert "zoo model name" in capsys.readouterr().err


# 2. A server running as another user can read what kerasimg writes.


def modes(root):
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
        if not p.name.startswith(".")
    }


def test_exports_and_the_zoo_index_get_the_umask_permissions(zoo_export):
    _, path, zoo = zoo_export
    found = modes(zoo)
    for name in ("zoo.json", "ZOO.md", "models.config", "pets/1/saved_model.pb", "pets/1/assets/labels.txt"):
        assert found[name] == 0o644, name
    assert found["pets/1"] == found["pets/1/assets"] == 0o755
    assert {m for n, m in found.items() if (zoo / n).is_file()} == {0o644}
    assert {m for n, m in found.items() if (zoo / n).is_dir()} == {0o755}


def test_run_files_get_the_umask_permissions(finished_run):
    found = modes(finished_run)
    for name in ("config.json", "metrics.json", "history.csv", "curves.png", "model.keras"):
        assert found[name] == 0o644, name


def test_atomic_writes_follow_a_stricter_umask(tmp_path):
    with umask(0o027):
        path = write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# 3, 4 and 7. The serving graph: size limit, EXIF orientation, empty batches.


def test_serving_refuses_a_bomb_before_decoding_it(zoo_export):
    _, path, zoo = zoo_export
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than this model accepts"):
        serve(image_bytes=tf.constant([bomb_png(20000, 20000)]))
    (entry,) = Zoo(zoo).entries()
    assert entry["max_pixels"] == 178_956_970


def test_a_sideways_phone_jpeg_is_served_upright(zoo_export):
    _, path, _ = zoo_export
    loaded = tf.saved_model.load(str(path))
    upright = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    upright[:, :24] = 255  # an asymmetric picture, so a wrong turn shows
    data = oriented_jpeg(upright, 6)
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([data]))["probabilities"]
    stored = tf.io.decode_jpeg(data).numpy()
    pixels = tf.image.resize(np.rot90(stored, -1)[None].astype(np.float32), (32, 32))
    direct = loaded.signatures["predict_images"](images=pixels)["probabilities"]
    np.testing.assert_allclose(served.numpy(), direct.numpy(), atol=1e-5)
    sideways = tf.image.resize(stored[None].astype(np.float32), (32, 32))
    wrong = loaded.signatures["predict_images"](images=sideways)["probabilities"].numpy()
    assert np.max(np.abs(wrong - served.numpy())) > 1e-4, "the test picture must tell the turns apart"


def test_an_empty_batch_gets_empty_outputs(zoo_export):
    _, path, _ = zoo_export
    out = tf.saved_model.load(str(path)).signatures["serving_default"](image_bytes=tf.constant([], tf.string))
    assert out["probabilities"].shape == (0, 3) and out["top_k_classes"].shape == (0, 3)
    assert out["classes"].shape == (0,)


def test_predict_exits_1_when_nothing_could_be_predicted(zoo_export, tmp_path, capsys):
    _, path, _ = zoo_export
    (tmp_path / "bomb.png").write_bytes(bomb_png(20000, 20000))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 no")
    assert predict_cli.main(["--model", str(path), str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "bomb.png: UNREADABLE (too large: 20000x20000" in captured.out
    assert "2 of 2 file(s) could not be read" in captured.err


# 5. A full disk is one line, and nothing written is lost.


def test_a_full_disk_is_one_line_naming_the_path(tiny_scenes, tmp_path, monkeypatch, capsys):
    def full(self, config):
        raise OSError(28, "No space left on device", str(self.config_path))

    monkeypatch.setattr(Run, "write_config", full)
    assert fit_cli.main(fit_args(tiny_scenes, tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: No space left on device: ") and "config.json" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_running_out_of_space_mid_run_stops_cleanly_and_resumes(tiny_scenes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = shutil.disk_usage
    calls = []

    def shrinking(path):
        calls.append(path)
        usage = real(path)
        return usage._replace(free=1024) if len(calls) > 2 else usage

    monkeypatch.setattr(callbacks.shutil, "disk_usage", shrinking)
    config = tiny_config(tiny_scenes, out, epochs=3)
    with pytest.raises(UserError, match=r"MB free on the disk of .*--resume"):
        fit(config, log=quiet)
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [0]
    monkeypatch.setattr(callbacks.shutil, "disk_usage", real)
    fit(load_run_config(out), resume=True, log=quiet)
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [0, 1, 2]


def test_a_real_two_megabyte_filesystem(tiny_scenes, tmp_path, capsys):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        assert fit_cli.main(fit_args(tiny_scenes, mount / "run")) == 2
        err = capsys.readouterr().err
        assert "MB free on the disk of" in err and err.count("\n") == 1
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# 6. One clear line instead of a traceback.


def test_out_pointing_at_a_file(tiny_scenes, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert fit_cli.main(fit_args(tiny_scenes, tmp_path / "file")) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"


def test_a_config_that_is_not_json(finished_run, tmp_path, capsys):
    broken = tmp_path / "run"
    shutil.copytree(finished_run, broken)
    (broken / "config.json").write_text("{not json")
    assert fit_cli.main(["--resume", str(broken)]) == 2
    assert "config.json is not valid JSON (line 1" in capsys.readouterr().err
    assert export_cli.main([str(broken), "--zoo", str(tmp_path / "zoo")]) == 2
    assert "config.json is not valid JSON" in capsys.readouterr().err


def test_a_model_that_safe_mode_refuses(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("model.keras"))
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(6, activation="softmax")(keras.layers.Lambda(lambda x: x[:, 0, 0])(inputs))
    keras.Model(inputs, outputs).save(run / "model.keras")
    with pytest.raises(UserError, match="safe_mode refused.*never loads with safe_mode=False"):
        export_run(run, "pets", tmp_path / "zoo")


# 7. No silent surprises.


def test_image_size_zero_is_refused(capsys):
    assert fit_cli.main(["--image-size", "0", "--weights", "none"]) == 2
    assert "--image-size must be at least 32" in capsys.readouterr().err


def test_resume_refuses_flags_that_conflict_with_the_run(finished_run, capsys):
    assert fit_cli.main(["--resume", str(finished_run), "--lr", "0.5", "--backbone", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "--backbone resnet50 (the run has small_cnn)" in err and "--lr 0.5 (the run has 0.001)" in err
    assert fit_cli.main(["--resume", str(finished_run)]) == 2
    assert "Pass a larger --epochs (it has 1)" in capsys.readouterr().err


def test_an_unevaluated_run_needs_allow_unfinished(tiny_scenes, tmp_path, capsys):
    out = tmp_path / "run"
    config = tiny_config(tiny_scenes, out, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        fit(config, callbacks=[CrashAfterEpoch(0)], log=quiet)
    zoo = tmp_path / "zoo"
    assert export_cli.main([str(out), "--zoo", str(zoo)]) == 2
    assert "stopped before its evaluation" in capsys.readouterr().err
    assert not zoo.exists()
    assert export_cli.main([str(out), "--zoo", str(zoo), "--allow-unfinished"]) == 0
    (entry,) = Zoo(zoo).entries()
    assert entry["evaluated"] is False
    assert "| small_cnn | 1 | small_cnn |" in (zoo / "ZOO.md").read_text()
    assert "unevaluated" in (zoo / "ZOO.md").read_text()


# 8. One process per run directory.


def test_a_second_fit_on_a_locked_run_is_refused_with_the_pid(finished_run, tiny_scenes, tmp_path):
    out = tmp_path / "run"
    with Run(out).lock():
        with pytest.raises(UserError, match=f"in use by another kerasimg process \\(PID {os.getpid()}\\)"):
            fit(tiny_config(tiny_scenes, out))
    with Run(finished_run).lock():
        with pytest.raises(UserError, match="in use by another kerasimg process"):
            fit(load_run_config(finished_run, epochs=3), resume=True, log=quiet)


# 9. Evaluation data is not held in memory.


def test_evaluation_batches_are_decoded_again_not_cached(tmp_path):
    from kerasimg.data.pipeline import image_dataset
    from kerasimg.data.splits import FileSplit

    path = tmp_path / "a.png"
    path.write_bytes(encoded(np.zeros((32, 32, 3), np.uint8), "PNG"))
    ds = image_dataset(FileSplit([str(path)], [0]), 32, 1, training=False)
    assert float(next(iter(ds))[0].numpy().max()) == 0
    path.write_bytes(encoded(np.full((32, 32, 3), 255, np.uint8), "PNG"))
    assert float(next(iter(ds))[0].numpy().min()) == 255


def test_a_finished_run_without_its_backup_is_not_silently_retrained(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("backup"))
    assert fit_cli.main(["--resume", str(run), "--epochs", "3"]) == 2
    assert "cannot be extended: its last phase's training state" in capsys.readouterr().err
    assert (run / "metrics.json").exists(), "the finished run is left as it was"


def test_resume_refuses_another_out(finished_run, tmp_path, capsys):
    assert fit_cli.main(["--resume", str(finished_run), "--epochs", "3", "--out", str(tmp_path / "x")]) == 2
    assert "a resumed run stays in" in capsys.readouterr().err


def test_a_bad_export_name_is_refused_before_training(tiny_scenes, tmp_path, capsys):
    assert fit_cli.main(fit_args(tiny_scenes, tmp_path / "run", "--export", "my model")) == 2
    assert "zoo model name" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
