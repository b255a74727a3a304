"""Issue 25's third hardening round: corrupt caches and files, odd names, spreadsheet cells, portability."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from kerasimg.training import feature_cache
from kerasimg.training.feature_cache import extract


def test_kerasimg_imports_where_there_is_no_fcntl():
    """Windows has no ``fcntl``: the package, its run locks and the zoo must import without it."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import kerasimg, kerasimg.locks, kerasimg.serving.zoo\n"
        "print('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout


def _extract_tiny(cache_dir, lines):
    """A two-view cache of a 3 -> 5 Dense layer over 6 examples, through ``feature_cache.extract``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    batches = [([x[:4], -x[:4]], np.arange(4)), ([x[4:], -x[4:]], np.arange(4, 6))]
    return extract(
        model, batches, split=None, count=6, cache_dir=cache_dir, name="train",
        identity={"views": ["a", "b"]}, log=lines.append,
    )  # fmt: skip


def _only_cache(cache_dir):
    (path,) = [p for p in cache_dir.glob("train-*.npy") if not p.name.endswith(".labels.npy")]
    return path


def test_a_cache_whose_values_were_overwritten_is_extracted_again(tmp_path):
    fresh = np.array(_extract_tiny(tmp_path, []).array)
    path = _only_cache(tmp_path)
    garbage = np.lib.format.open_memmap(path, "r+")  # the header kept, the values replaced
    garbage[:] = 123.0
    garbage.flush()
    del garbage
    lines = []
    cached = _extract_tiny(tmp_path, lines)
    assert any("does not match its checksum" in line and "extracting it again" in line for line in lines)
    np.testing.assert_array_equal(cached.array, fresh)


def test_a_truncated_cache_is_extracted_again_without_a_traceback(tmp_path):
    fresh = np.array(_extract_tiny(tmp_path, []).array)
    path = _only_cache(tmp_path)
    path.write_bytes(path.read_bytes()[:-40])
    lines = []
    np.testing.assert_array_equal(_extract_tiny(tmp_path, lines).array, fresh)
    assert any("is truncated or changed" in line for line in lines), lines


def test_non_finite_values_are_caught_where_the_sampled_checksum_looks_away(tmp_path, monkeypatch):
    # A large cache is checksummed by sampled blocks: make this one "large" with blocks that miss row 3.
    monkeypatch.setattr(feature_cache, "_FULL_CHECKSUM_BYTES", 0)
    monkeypatch.setattr(feature_cache, "_BLOCK_BYTES", 16)
    monkeypatch.setattr(feature_cache, "_SAMPLED_BLOCKS", 2)
    fresh = np.array(_extract_tiny(tmp_path, []).array)
    array = np.lib.format.open_memmap(_only_cache(tmp_path), "r+")
    array[3] = np.nan
    array.flush()
    del array
    lines = []
    np.testing.assert_array_equal(_extract_tiny(tmp_path, lines).array, fresh)
    assert any("holds non-finite values" in line for line in lines), lines


def test_a_cache_without_a_checksum_record_is_not_trusted(tmp_path):
    _extract_tiny(tmp_path, [])
    (meta_path,) = tmp_path.glob("train-*.json")
    meta = json.loads(meta_path.read_text())
    del meta["files"]  # what kerasimg wrote before caches carried a record
    meta_path.write_text(json.dumps(meta))
    lines = []
    _extract_tiny(tmp_path, lines)
    assert any("has no checksum" in line for line in lines), lines
    assert "files" in json.loads(meta_path.read_text())


def test_temporary_files_of_a_killed_extraction_are_removed(tmp_path):
    leftovers = [tmp_path / ".train-0123abcd.npy.k3j9x1.npy", tmp_path / ".train-0123abcd.json.a8f0q2.json"]
    for path in leftovers:
        path.write_bytes(b"\x93NUMPY half-written")
    kept = tmp_path / ".keep-me"
    kept.write_text("not ours")
    lines = []
    _extract_tiny(tmp_path, lines)
    assert not any(path.exists() for path in leftovers)
    assert kept.exists()
    assert sum("left in" in line for line in lines) == 2


def _one_class_model():
    """A small_cnn whose head answers class 0 whatever the image."""
    from kerasimg.models import build_classifier

    model = build_classifier("small_cnn", 3, image_size=32, weights="none")
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.array([9.0, 0.0, 0.0], bias.dtype)])
    return model


def test_int8_agreement_with_a_one_class_model_records_the_accuracy_that_exposes_it(tmp_path, capsys):
    from kerasimg.export import print_formats
    from kerasimg.serving import Zoo, export_model
    from kerasimg.serving.convert import CheckImages

    pixels = np.random.default_rng(0).uniform(0, 255, (10, 32, 32, 3))
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    path = export_model(
        _one_class_model(), ["a", "b", "c"], 32, "one-class", tmp_path, formats="litert-int8",
        images=CheckImages.from_array(pixels, "10 labelled images", labels), min_int8_agreement=0.0,
    )  # fmt: skip
    (entry,) = Zoo(tmp_path).entries()
    int8 = entry["formats"]["litert-int8"]
    assert int8["top1_agreement"] == 1.0 and int8["agreement_images"] == 10
    assert int8["int8_accuracy"] == int8["float_accuracy"] == 0.3
    print_formats(path)
    line = capsys.readouterr().out
    assert "accuracy 30.00% (float 30.00%)" in line and "the whole test split: fewer than 100" in line


def test_int8_without_a_run_is_checked_on_a_hundred_images_not_a_handful():
    from kerasimg.serving.export import synthetic_check_images

    batches = list(synthetic_check_images(32, ["savedmodel", "litert-int8"]).test())
    assert sum(len(pixels) for pixels, _ in batches) == 100 and all(labels is None for _, labels in batches)
    assert max(len(pixels) for pixels, _ in batches) <= 32  # a runtime's memory grows with its batch
    # OpenVINO's bfloat16 agreement needs as many; its float32 check alone does not.
    assert sum(map(len, synthetic_check_images(32, ["savedmodel", "openvino"]).validation())) == 100
    (batch,) = synthetic_check_images(32, ["savedmodel", "openvino"], "float32").validation()
    assert len(batch) == 3
    (batch,) = synthetic_check_images(32, ["savedmodel", "onnx"]).validation()
    assert len(batch) == 3  # float formats are compared value by value; a few images do


def _batch_norm_momenta(model):
    from kerasimg.models import backbone_of

    def walk(layer):
        for inner in getattr(layer, "layers", []):
            if isinstance(inner, keras.layers.BatchNormalization):
                yield inner.momentum
            yield from walk(inner)

    return set(walk(backbone_of(model)))


def test_batch_norm_settles_quickly_from_scratch_and_keeps_its_momentum_when_pretrained(tmp_path):
    """MobileNetV3's 0.999 left a from-scratch run's statistics at their start: every image p=0.505."""
    from kerasimg.models import backbone_of, build_classifier

    scratch = build_classifier("mobilenetv3_small", 2, image_size=32, weights="none")
    assert _batch_norm_momenta(scratch) == {0.9}
    path = tmp_path / "mobilenet.weights.h5"
    backbone_of(scratch).save_weights(path)
    pretrained = build_classifier("mobilenetv3_small", 2, image_size=32, weights=str(path))
    assert _batch_norm_momenta(pretrained) == {0.999}  # the family's own, as its weights were trained
    scratch.save(tmp_path / "model.keras")
    assert _batch_norm_momenta(keras.saving.load_model(tmp_path / "model.keras")) == {0.9}


def test_a_model_that_answers_one_class_is_warned_about(tmp_path):
    from kerasimg.diagnose.predictions import Predictions

    probabilities = np.tile([0.505, 0.495], (6, 1))
    one_class = Predictions([f"{i}.jpg" for i in range(6)], np.array([0, 1] * 3), probabilities, ["a", "b"])
    warning = one_class.one_class_warning("test")
    assert warning.startswith("Warning: the model predicts 'a' for every one of the 6 test images")
    mixed = Predictions(one_class.files, one_class.labels, probabilities[:, ::-1].copy(), ["a", "b"])
    mixed.probabilities[0] = [0.9, 0.1]
    assert mixed.one_class_warning("test") is None
    only_a = Predictions(one_class.files, np.zeros(6, int), probabilities, ["a", "b"])
    assert only_a.one_class_warning("test") is None  # a split of one class: one answer is right


@pytest.mark.parametrize("value", ["hub/missing", "./missing_preset", "~/no/such/preset"])
def test_a_hub_value_that_looks_like_a_path_is_a_local_folder_and_never_goes_online(value, monkeypatch):
    import socket

    from kerasimg.errors import UserError
    from kerasimg.models import get_backbone

    def no_network(*args, **kwargs):
        raise AssertionError("the network was contacted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(UserError, match=r"keras-hub preset folder .* does not exist .* Received: backbone="):
        get_backbone(f"hub:{value}")


def test_an_explicit_zoo_wins_over_a_same_named_folder_here(tmp_path, monkeypatch):
    from kerasimg.serving.predict import resolve_model_dir

    for root in (tmp_path / "zoo" / "pets", tmp_path / "pets"):
        (root / "1").mkdir(parents=True)
        (root / "1" / "saved_model.pb").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("pets", tmp_path / "zoo") == tmp_path / "zoo" / "pets" / "1"
    assert resolve_model_dir("pets/1", tmp_path / "zoo") == tmp_path / "zoo" / "pets" / "1"
    assert resolve_model_dir("pets").resolve() == tmp_path / "pets" / "1"  # no zoo named: the folder here
    assert resolve_model_dir(str(tmp_path / "pets"), tmp_path / "zoo") == tmp_path / "pets" / "1"
