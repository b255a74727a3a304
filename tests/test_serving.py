"""Export to the zoo: signatures a fresh TensorFlow process can use, versions, config, warm-up, predict."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import serve_in_fresh_process

import kerasimg.predict as predict_cli
from kerasimg.errors import ArgumentError
from kerasimg.models import build_classifier
from kerasimg.serving import Zoo, export_model
from kerasimg.serving import export as export_module
from kerasimg.serving.signatures import decode_batch
from kerasimg.serving.warmup import read_warmup_requests
from kerasimg.serving.zoo import parse_models_config

CLASSES = ["cat", "dog", "fish"]


def tiny_model(backbone="small_cnn", size=32, seed=0):
    keras.utils.set_random_seed(seed)
    return build_classifier(backbone, len(CLASSES), image_size=size, weights="none")


def jpeg(seed, size=40):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return tf.io.encode_jpeg(pixels).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    zoo = tmp_path_factory.mktemp("zoo")
    model = tiny_model()
    path = export_model(model, CLASSES, 32, "pets", zoo, metadata={"backbone": "small_cnn"})
    return model, path, zoo


def test_a_fresh_tensorflow_process_serves_jpeg_bytes_like_the_keras_model(exported, tmp_path):
    model, path, _ = exported
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(jpeg(i))
    result = serve_in_fresh_process(path, files, tmp_path)
    assert result["inputs"] == {"image_bytes": ["string", [None]]}
    assert result["outputs"] == ["classes", "probabilities", "scores", "top_k_classes", "top_k_scores"]
    assert result["labels"] == CLASSES
    probabilities = np.array(result["probabilities"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    pixels = decode_batch(tf.constant([f.read_bytes() for f in files]), 32)
    expected = keras.ops.convert_to_numpy(model(pixels, training=False))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-5)
    assert result["classes"] == [CLASSES[i] for i in expected.argmax(axis=1)]


def test_flip_tta_in_the_signatures_serves_the_mean_of_both_views_in_a_fresh_process(tmp_path):
    model, zoo = tiny_model(seed=1), tmp_path / "zoo"
    path = export_model(model, CLASSES, 32, "pets", zoo, tta="flip")
    files = [tmp_path / f"{i}.jpg" for i in range(3)]
    for i, file in enumerate(files):
        file.write_bytes(jpeg(i))
    served = np.array(serve_in_fresh_process(path, files, tmp_path)["probabilities"])
    pixels = decode_batch(tf.constant([f.read_bytes() for f in files]), 32)
    plain = keras.ops.convert_to_numpy(model(pixels, training=False))
    mirrored = keras.ops.convert_to_numpy(model(tf.image.flip_left_right(pixels), training=False))
    np.testing.assert_allclose(served, (plain + mirrored) / 2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(served, plain, rtol=1e-4, atol=1e-5)
    (entry,) = Zoo(zoo).entries()
    assert entry["tta"] == "flip" and "flip TTA" in (zoo / "ZOO.md").read_text()


def test_tta_with_a_format_that_cannot_hold_it_is_refused_before_export(tmp_path):
    with pytest.raises(ArgumentError, match="tta.*SavedModel's signatures only, not into onnx"):
        export_model(tiny_model(), CLASSES, 32, "pets", tmp_path, formats="savedmodel,onnx", tta="flip")
    assert not (tmp_path / "pets").exists()


def test_saved_model_cli_shows_both_signatures(exported):
    _, path, _ = exported
    cli = [
        sys.executable,
        "-m",
        "tensorflow.python.tools.saved_model_cli",
        "show",
        "--dir",
        str(path),
        "--all",
    ]
    shown = subprocess.run(cli, capture_output=True, text=True, timeout=300).stdout
    assert "signature_def['serving_default']" in shown and "signature_def['predict_images']" in shown
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in shown
    assert "inputs['images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 32, 32, 3)" in shown
    assert "outputs['probabilities']" in shown and "outputs['top_k_classes']" in shown


def test_raw_pixels_signature_equals_keras(exported):
    model, path, _ = exported
    pixels = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    out = tf.saved_model.load(str(path)).signatures["predict_images"](images=tf.constant(pixels))
    expected = keras.ops.convert_to_numpy(model(pixels, training=False))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["scores"].numpy(), expected.max(axis=1), rtol=1e-5)


def test_rest_row_format_maps_onto_the_single_named_input(exported):
    """A REST body written as TF Serving documents it gets the Keras model's answers, row by row.

    TF Serving's row format (https://www.tensorflow.org/tfx/serving/api_rest): with one named
    input, each element of "instances" is that input's value, and {"b64": ...} is binary data.
    The images are already 32 px, so plain TensorFlow decoding gives the model's pixels.
    """
    model, path, _ = exported
    images = [jpeg(5, size=32), jpeg(6, size=32)]
    instances = [f'{{"b64": "{base64.b64encode(image).decode()}"}}' for image in images]
    body = '{"instances": [' + ", ".join(instances) + "]}"
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    assert name == "image_bytes"
    values = [base64.b64decode(instance["b64"]) for instance in json.loads(body)["instances"]]
    out = serve(**{name: tf.constant(values)})
    pixels = np.stack([tf.io.decode_jpeg(image, channels=3).numpy() for image in images]).astype("float32")
    expected = keras.ops.convert_to_numpy(model(pixels, training=False))
    assert not np.allclose(expected[0], expected[1]), "two different rows, so their order is checked"
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-5)
    assert [c.decode() for c in out["classes"].numpy()] == [CLASSES[i] for i in expected.argmax(axis=1)]


def test_warmup_records_and_models_config_parse_with_tf_serving_protos(exported):
    _, path, zoo = exported
    logs = read_warmup_requests(path / "assets.extra" / "tf_serving_warmup_requests")
    assert len(logs) == export_module.WARMUP_IMAGES
    request = logs[0].predict_log.request
    assert request.model_spec.name == "pets" and request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(request.inputs["image_bytes"]).shape == (1,)
    config = parse_models_config((zoo / "models.config").read_text())
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("pets", "/models/pets", "tensorflow")


def test_versions_increment_and_the_index_records_each(tmp_path):
    model = tiny_model()
    first = export_model(model, CLASSES, 32, "pets", tmp_path, metadata={"metrics": {"test_accuracy": 0.5}})
    second = export_model(model, CLASSES, 32, "pets", tmp_path)
    assert (first.name, second.name) == ("1", "2")
    entries = Zoo(tmp_path).entries()
    assert [(e["name"], e["version"]) for e in entries] == [("pets", 1), ("pets", 2)]
    assert entries[0]["class_names"] == CLASSES and entries[0]["metrics"]["test_accuracy"] == 0.5
    assert "| pets | 2 |" in (tmp_path / "ZOO.md").read_text()


def test_an_interrupted_export_leaves_no_version_behind(tmp_path, monkeypatch):
    model = tiny_model()
    export_model(model, CLASSES, 32, "pets", tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "verify_export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(model, CLASSES, 32, "pets", tmp_path)
    assert sorted(p.name for p in (tmp_path / "pets").iterdir()) == ["1"]
    assert len(Zoo(tmp_path).entries()) == 1


# One per way a backbone is built and scales its input (the fixture covers small_cnn). DenseNet and
# Inception-ResNet export through the same Keras Applications path as ResNet-50 and took a minute each.
FAMILIES = {
    "resnet50": 64,
    "efficientnet_b0": 32,
    "efficientnet_w1_d1_r224": 32,
    "resnext50_32x4d": 64,
    "vit_tiny16": 32,
    # keras.applications wrapped under Keras's own names (and ConvNeXt's custom layers). EfficientNetV2
    # and MobileNetV3 take the same wrapper and took 30 s and 16 s more; they are left out.
    "convnext_tiny": 32,
    "dinov2_small14": 42,  # keras-hub with the class-token + mean pooling layer
}


@pytest.mark.parametrize("backbone", list(FAMILIES))
def test_every_backbone_family_exports(backbone, tmp_path):
    size = FAMILIES[backbone]
    path = export_model(tiny_model(backbone, size), CLASSES, size, backbone.replace("_", "-"), tmp_path)
    assert (path / "saved_model.pb").exists()  # export_model verified both signatures against Keras


def test_predict_names_the_bad_file_and_predicts_the_rest(exported, tmp_path, capsys):
    _, path, _ = exported
    for i in range(2):
        (tmp_path / f"good{i}.jpg").write_bytes(jpeg(i))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert predict_cli.main(["--model", str(path.parent), str(tmp_path), "--json"]) == 0
    results = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)}
    assert "error" in results["broken.jpg"] and "not a readable image" in results["broken.jpg"]["error"]
    for name in ("good0.jpg", "good1.jpg"):
        top = results[name]["top"]
        assert len(top) == 3 and {c for c, _ in top} == set(CLASSES)
        assert top[0][1] >= top[1][1] >= top[2][1]
