"""--weights: ImageNet fetch failures are one clear sentence; local files really load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasimg.fit as fit_cli
from kerasimg.errors import UserError, WeightsUnavailableError
from kerasimg.models import backbone_of, build_classifier, get_backbone
from kerasimg.models.weights import resolve_weights


def offline_get_file(fname, origin=None, **kwargs):
    raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")


def test_failed_imagenet_fetch_names_file_folder_and_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_weights(get_backbone("resnet50"), "imagenet")
    message = str(caught.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert f" is not in {tmp_path / 'keras-home' / 'models'} and downloading" in message
    assert "--weights none" in message and "--weights PATH" in message
    assert "Name or service not known" in message and message.count("https://") == 1


def test_fit_cli_reports_the_offline_weights_error_without_traceback(
    monkeypatch, capsys, tmp_path, tiny_scenes
):
    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    code = fit_cli.main(
        [
            "--backbone",
            "resnet50",
            "--data",
            str(tiny_scenes),
            "--image-size",
            "32",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: Could not get ImageNet weights for resnet50")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists(), "a failed start leaves no run directory behind"


def test_a_local_weights_file_is_loaded(tmp_path):
    keras.utils.set_random_seed(1)
    source = build_classifier("small_cnn", 3, image_size=32, weights="none")
    path = tmp_path / "backbone.weights.h5"
    backbone_of(source).save_weights(path)
    keras.utils.set_random_seed(2)
    loaded = build_classifier("small_cnn", 3, image_size=32, weights=str(path))
    for a, b in zip(backbone_of(source).weights, backbone_of(loaded).weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"weights file does not exist.*Received: weights='.*nope.h5'"):
        resolve_weights(get_backbone("small_cnn"), str(tmp_path / "nope.h5"))


def test_a_backbone_without_imagenet_weights_says_so():
    with pytest.raises(UserError, match="small_cnn.*has no ImageNet weights"):
        resolve_weights(get_backbone("small_cnn"), "imagenet")


def place_cached_file(spec, content: bytes, monkeypatch, tmp_path):
    """A file where keras.utils.get_file looks, as a user copying weights by hand would leave it.

    ``$KERAS_HOME`` is this test's own, so no other test finds the file.
    """
    from kerasimg.models.weights import keras_models_dir

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    path = keras_models_dir() / spec.pretrained.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def network_must_not_be_used(*args, **kwargs):
    raise AssertionError("get_file was called although the cached file was already judged")


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_a_cached_file_with_the_wrong_checksum_is_reported_as_found_not_missing(
    monkeypatch, tmp_path, algorithm
):
    import dataclasses
    import hashlib

    spec = get_backbone("resnet50")
    good = b"the complete weights file"
    expected = hashlib.new(algorithm, good).hexdigest()
    spec = dataclasses.replace(spec, pretrained=dataclasses.replace(spec.pretrained, file_hash=expected))
    path = place_cached_file(spec, good[:7], monkeypatch, tmp_path)  # a truncated copy
    actual = hashlib.new(algorithm, good[:7]).hexdigest()
    monkeypatch.setattr(keras.utils, "get_file", network_must_not_be_used)
    name = {"md5": "MD5", "sha256": "SHA-256"}[algorithm]
    with pytest.raises(
        WeightsUnavailableError,
        match=rf"found .*{spec.pretrained.file_name} \(7 bytes\) but its checksum differs "
        rf"\(expected {name} {expected[:12]}\.\.\., actual {actual[:12]}\.\.\.\).*Delete it.*"
        r"complete copy of https://.*--weights none",
    ) as caught:
        resolve_weights(spec, "imagenet")
    assert "is not in" not in str(caught.value)
    assert path.read_bytes() == good[:7], "the user's file is left in place"


def test_a_cached_file_with_the_right_checksum_is_handed_to_get_file(monkeypatch, tmp_path):
    import dataclasses
    import hashlib

    spec = get_backbone("resnet50")
    content = b"complete"
    spec = dataclasses.replace(
        spec, pretrained=dataclasses.replace(spec.pretrained, file_hash=hashlib.md5(content).hexdigest())
    )
    path = place_cached_file(spec, content, monkeypatch, tmp_path)
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: str(path))
    assert resolve_weights(spec, "imagenet") == str(path)


def test_fit_cli_prints_the_checksum_error_as_one_line(monkeypatch, capsys, tiny_scenes, tmp_path):
    spec = get_backbone("resnet50")
    place_cached_file(spec, b"truncated", monkeypatch, tmp_path)
    monkeypatch.setattr(keras.utils, "get_file", network_must_not_be_used)
    code = fit_cli.main(
        [
            "--backbone",
            "resnet50",
            "--data",
            str(tiny_scenes),
            "--image-size",
            "32",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: Could not use ImageNet weights for resnet50: found ")
    assert "(expected MD5 4d473c1dd8be..., actual " in err
