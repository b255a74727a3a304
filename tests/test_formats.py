"""ONNX, LiteRT and OpenVINO exports: checked before kept, beside the SavedModel TF Serving loads."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import kerasimg.export as export_cli
import kerasimg.predict as predict_cli
from kerasimg.errors import UserError
from kerasimg.serving import Zoo, export_model
from kerasimg.serving.formats import FORMATS
from kerasimg.serving.zoo import parse_models_config

ALL = "savedmodel,onnx,litert,litert-fp16,litert-int8,openvino"


@pytest.fixture(scope="module")
def exported(tiny_scenes, tmp_path_factory):
    """A one-epoch small_cnn run exported by ``fit --export --format`` to every format."""
    import kerasimg.fit as fit_cli

    root = tmp_path_factory.mktemp("formats")
    zoo, run = root / "zoo", root / "run"
    flags = ["--backbone", "small_cnn", "--weights", "none", "--data", str(tiny_scenes), "--epochs", "1"]
    flags += ["--batch-size", "8", "--image-size", "32", "--out", str(run), "--export", "scenes"]
    assert fit_cli.main([*flags, "--zoo", str(zoo), "--format", ALL, "--calibration-images", "8"]) == 0
    (entry,) = Zoo(zoo).entries()
    return run, zoo, entry


def test_every_format_is_kept_beside_a_savedmodel_that_tf_serving_loads(exported, tiny_scenes):
    run, zoo, entry = exported
    version = zoo / "scenes" / "1"
    assert (version / "labels.txt").read_text().split() == entry["class_names"]
    assert list(entry["formats"]) == ALL.split(",")
    for name, facts in entry["formats"].items():
        if name != "savedmodel":
            assert facts["bytes"] == sum(f.stat().st_size for f in FORMATS[name].files(version)) > 0
        if FORMATS[name].tolerance is not None and name != "savedmodel":
            assert facts["max_abs_diff"] <= FORMATS[name].tolerance and facts["checked_images"] > 0
    int8 = entry["formats"]["litert-int8"]
    test_images = sum(1 for p in (tiny_scenes / "seg_test").rglob("*") if p.is_file())
    assert int8["agreement_images"] == test_images and 0.98 <= int8["top1_agreement"] <= 1
    assert int8["bytes"] < entry["formats"]["litert"]["bytes"] / 2
    assert (
        f"litert-int8 {int8['bytes'] / 1e6:.1f} MB ({int8['top1_agreement']:.1%} top-1)"
        in (zoo / "ZOO.md").read_text()
    )
    # The version folder loads as TF Serving's SavedModelBundle does: tag "serve", its signatures.
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version))
    assert {"serving_default", "predict_images"} <= set(meta.signature_def)
    config = parse_models_config((zoo / "models.config").read_text())
    assert [c.base_path for c in config.model_config_list.config] == ["/models/scenes"]


def test_predict_runs_every_format_like_the_savedmodel(exported, tiny_scenes, capsys):
    _, zoo, _ = exported
    images = sorted((tiny_scenes / "seg_test").rglob("*.jpg"))[:4]

    def predict(name, *flags):
        argv = ["--model", "scenes", "--zoo", str(zoo), "--format", name, "--json", *flags]
        assert predict_cli.main([*argv, *map(str, images)]) == 0
        return json.loads(capsys.readouterr().out)

    reference = predict("savedmodel")
    for name in ("onnx", "litert", "litert-fp16", "litert-int8", "openvino"):
        # OpenVINO in float32: the file as checked (auto may serve bfloat16, tested below).
        results = predict(name, *(["--precision", "float32"] if name == "openvino" else []))
        assert [r["file"] for r in results] == [r["file"] for r in reference]
        tolerance = FORMATS[name].tolerance or 0.05
        for got, want in zip(results, reference):
            assert np.allclose([s for _, s in got["top"]], [s for _, s in want["top"]], atol=tolerance)
            if FORMATS[name].tolerance is not None:
                assert [c for c, _ in got["top"]] == [c for c, _ in want["top"]]


def test_int8_below_the_bar_fails_with_its_figure_and_adds_nothing(exported):
    from kerasimg.models import build_classifier
    from kerasimg.serving.convert import CheckImages

    _, zoo, _ = exported
    before = Zoo(zoo).entries()
    model = build_classifier("small_cnn", 3, image_size=32, weights="none")
    pixels = np.random.default_rng(0).uniform(0, 255, (7, 32, 32, 3))
    # No file can agree on more than 100%: the bar is out of reach, the measurement still real.
    with pytest.raises(UserError, match=r"on only 1?\d?\d\.\d% of 7 test images .* nothing was added"):
        export_model(
            model,
            ["a", "b", "c"],
            32,
            "strict",
            zoo,
            formats="litert-int8",
            images=CheckImages.from_array(pixels, "7 random images"),
            min_int8_agreement=1.01,
        )
    assert Zoo(zoo).entries() == before and Zoo(zoo).versions("strict") == []
    assert not list((zoo / "strict").iterdir())


def test_a_missing_runtime_or_unknown_format_is_one_line_naming_the_fix(exported, monkeypatch, capsys):
    run, zoo, _ = exported
    assert export_cli.main([str(run), "--zoo", str(zoo), "--format", "onnx,tflite"]) == 2
    assert "--format must be a comma-separated list of savedmodel, onnx" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    assert export_cli.main([str(run), "--zoo", str(zoo), "--format", "onnx"]) == 2
    assert (
        "needs onnxruntime, which is not installed: pip install 'kerasimg[onnx]'" in capsys.readouterr().err
    )
    assert len(Zoo(zoo).entries()) == 1
    with pytest.raises(UserError, match=r"pip install 'kerasimg\[onnx\]'"):
        predict_cli.api.predict("scenes", str(run), zoo=zoo, format="onnx")


# One backbone per family; small_cnn is exported above. tf2onnx takes 20-50 s per family on a shared
# 2-core machine even at 32 px (graph size, not pixels), so this matrix runs on demand:
# KERASIMG_EXPORT_FAMILIES=1 pytest tests/test_formats.py -k family. docs/backbones.md's table is its result.
FAMILIES = {
    "resnet50": 32,
    "densenet201": 32,
    "inception_resnet_v2": 75,
    "efficientnet_b0": 32,
    "resnext50_32x4d": 32,
    "vit_tiny16": 32,
    "convnext_tiny": 32,
}


# What a family cannot convert to, and how the export says so (docs/backbones.md's table).
UNSUPPORTED: dict[str, dict[str, str]] = {}


@pytest.mark.skipif(not os.environ.get("KERASIMG_EXPORT_FAMILIES"), reason="minutes per family; on demand")
@pytest.mark.parametrize("backbone", list(FAMILIES))
def test_every_backbone_family_converts_to_every_format(backbone, tmp_path):
    from kerasimg.models import build_classifier

    size = FAMILIES[backbone]
    model = build_classifier(backbone, 3, image_size=size, weights="none")
    unsupported = UNSUPPORTED.get(backbone, {})
    formats = [f for f in ALL.split(",") if f not in unsupported]
    # Random weights: the int8 file is converted and run, its agreement is not judged.
    export_model(model, ["a", "b", "c"], size, "family", tmp_path, formats=formats, min_int8_agreement=0.0)
    assert list(Zoo(tmp_path).entries()[0]["formats"]) == formats
    for name, message in unsupported.items():
        with pytest.raises(UserError, match=message):
            export_model(model, ["a", "b", "c"], size, "family", tmp_path, formats=name)
        assert Zoo(tmp_path).versions("family") == [1]


def test_exact_gelu_and_constant_tensors_convert_to_onnx(tmp_path):
    """tf2onnx lacks ``Erfc`` (the exact GELU of ViT, ConvNeXt, DINOv2) and leaves a layer's constant
    tensors as graph inputs; both kept ViT and ConvNeXt out of ONNX."""
    import keras

    from kerasimg.serving.convert import convert
    from kerasimg.serving.runtimes import OnnxRuntime

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Normalization(mean=[10.0, 20.0, 30.0], variance=[4.0, 9.0, 16.0])(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation=keras.activations.gelu)(x)  # approximate=False: erfc
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    convert(model, "onnx", tmp_path / "model.onnx", calibration=None)
    pixels = np.random.default_rng(0).uniform(0, 255, (5, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(
        OnnxRuntime(tmp_path / "model.onnx")(pixels), model.predict(pixels, verbose=0), atol=1e-5
    )


def test_openvino_serves_bfloat16_only_where_the_cpu_has_it_and_the_top1_agrees(
    exported, monkeypatch, tmp_path
):
    from kerasimg.models import build_classifier
    from kerasimg.serving import runtimes
    from kerasimg.serving.convert import CheckImages
    from kerasimg.serving.formats import MIN_BFLOAT16_AGREEMENT

    _, zoo, entry = exported
    facts = entry["formats"]["openvino"]
    version = zoo / "scenes" / "1"
    if runtimes.cpu_serves_bfloat16():
        bf16 = facts["bfloat16"]
        assert bf16["agreement_images"] > 0 and 0 <= bf16["top1_agreement"] <= 1
        assert facts["serves"] == (
            "bfloat16" if bf16["top1_agreement"] >= MIN_BFLOAT16_AGREEMENT else "float32"
        )
    else:
        assert facts["serves"] == "float32" and "bfloat16" not in facts
    # The choice travels in the file: auto computes in it, float32 is always available.
    assert runtimes.load_runtime(version, "openvino", "auto").precision == facts["serves"]
    assert runtimes.load_runtime(version, "openvino", "float32").precision == "float32"

    keras_model = build_classifier("small_cnn", 3, image_size=32, weights="none")
    pixels = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3))
    images = CheckImages.from_array(pixels, "6 random images")

    def served(precision, **kwargs):
        path = export_model(
            keras_model,
            ["a", "b", "c"],
            32,
            "ov",
            tmp_path,
            formats="openvino",
            images=images,
            precision=precision,
        )
        return Zoo(tmp_path).entries()[-1]["formats"]["openvino"]["serves"], path

    assert served("float32")[0] == "float32"
    # A CPU without bfloat16: auto serves float32, and bfloat16 is refused in one line.
    monkeypatch.setattr(runtimes, "cpu_serves_bfloat16", lambda: False)
    serves, path = served("auto")
    assert serves == "float32" and runtimes.load_runtime(path, "openvino", "auto").precision == "float32"
    with pytest.raises(UserError, match="no bfloat16 support"):
        runtimes.load_runtime(path, "openvino", "bfloat16")


def test_bfloat16_is_refused_for_a_format_that_cannot_compute_in_it(exported, capsys):
    _, zoo, _ = exported
    argv = ["--model", "scenes", "--zoo", str(zoo), "--format", "onnx", "--precision", "bfloat16", "x.jpg"]
    assert predict_cli.main(argv) == 2
    message = capsys.readouterr().err
    assert "--precision bfloat16 is served by the savedmodel and openvino formats only" in message


def test_an_openvino_file_keeps_only_the_models_output(tmp_path):
    """TensorFlow's swish leaves an unused ``IdentityN`` output that OpenVINO's reader made a model
    output (EfficientNet-B0: 50 of them, 2.3x slower); the converted file keeps the model's one."""
    import keras
    import openvino

    from kerasimg.serving.convert import convert
    from kerasimg.serving.runtimes import OpenVINORuntime

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="swish")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="swish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    raw = tmp_path / "raw.xml"
    model.export(str(raw), format="openvino", verbose=False)
    assert len(openvino.Core().read_model(str(raw)).outputs) > 1  # what the fix is for
    convert(model, "openvino", tmp_path / "model.xml", calibration=None)
    assert len(openvino.Core().read_model(str(tmp_path / "model.xml")).outputs) == 1
    pixels = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        OpenVINORuntime(tmp_path / "model.xml")(pixels), model.predict(pixels, verbose=0), atol=1e-5
    )
