"""A bfloat16 SavedModel: chosen at export, carried by its graph, refused when asked otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import kerasimg.serving.bfloat16 as bfloat16
from kerasimg.errors import UserError
from kerasimg.serving import Zoo, export_model
from kerasimg.serving.convert import CheckImages
from kerasimg.serving.runtimes import load_runtime

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model():
    import keras

    from kerasimg.models import build_classifier

    keras.utils.set_random_seed(0)
    return build_classifier("small_cnn", len(CLASSES), image_size=32, weights="none")


@pytest.fixture(scope="module")
def images():
    pixels = np.random.default_rng(0).uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    return pixels, CheckImages.from_array(pixels, "12 random images", labels=np.arange(12) % 3)


def _export(model, images, folder, precision):
    path = export_model(model, CLASSES, 32, "m", folder, images=images[1], precision=precision)
    return path, Zoo(folder).entries()[-1]["formats"]["savedmodel"]


def _conv_dtypes(path) -> set:
    """The dtypes the SavedModel's ``predict_images`` graph runs its convolutions in."""
    graph = tf.saved_model.load(str(path)).signatures["predict_images"].graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {tf.dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op == "Conv2D"}


@pytest.mark.skipif(
    not bfloat16.cpu_computes_bfloat16(), reason="needs a CPU with AVX512-BF16 or AMX (oneDNN's bfloat16)"
)
def test_a_bfloat16_savedmodel_computes_in_bfloat16_with_float32_inputs_and_outputs(model, images, tmp_path):
    pixels, _ = images
    path, facts = _export(model, images, tmp_path, "bfloat16")
    assert _conv_dtypes(path) == {"bfloat16"}
    assert facts["serves"] == "bfloat16" and facts["bfloat16"]["agreement_images"] == len(pixels)
    assert 0 <= facts["bfloat16"]["top1_agreement"] <= 1 and "bfloat16_accuracy" in facts["bfloat16"]
    runtime = load_runtime(path, "savedmodel", "auto")
    got = runtime(pixels)
    assert runtime.precision == "bfloat16" and got.dtype == np.float32
    expected = model.predict(pixels, verbose=0)
    assert np.abs(got - expected).max() < 3e-2 and not np.array_equal(got, expected)
    # The SavedModel has one graph: float32 is refused, naming the export that gives it.
    with pytest.raises(UserError, match=r"computes in bfloat16 .*--precision float32"):
        load_runtime(path, "savedmodel", "float32")
    from kerasimg import api

    image = tmp_path / "x.png"
    image.write_bytes(tf.io.encode_png(pixels[0].astype("uint8")).numpy())
    with pytest.raises(UserError, match="computes in bfloat16"):
        api.predict(path, image, precision="float32")
    (result,) = api.predict(path, image, precision="bfloat16")
    assert result["top"][0][0] == CLASSES[int(got[0].argmax())]


def test_auto_keeps_the_savedmodel_float32_and_bfloat16_needs_a_cpu_that_has_it(
    model, images, tmp_path, monkeypatch
):
    """A SavedModel is served on CPUs the export never sees, so only --precision bfloat16 writes one."""
    monkeypatch.setattr(bfloat16, "cpu_computes_bfloat16", lambda: True)
    path, facts = _export(model, images, tmp_path, "auto")
    assert facts == {"bytes": facts["bytes"], "serves": "float32"} and _conv_dtypes(path) == {"float32"}
    assert load_runtime(path, "savedmodel", "auto").precision == "float32"
    with pytest.raises(UserError, match=r"computes in float32 .*--precision bfloat16"):
        load_runtime(path, "savedmodel", "bfloat16")
    monkeypatch.setattr(bfloat16, "cpu_computes_bfloat16", lambda: False)
    with pytest.raises(UserError, match="this CPU has no bfloat16 instructions"):
        _export(model, images, tmp_path, "bfloat16")
    assert len(Zoo(tmp_path).entries()) == 1 and sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_a_model_trained_in_bfloat16_exports_a_float32_graph_unless_asked(images, tmp_path, monkeypatch):
    """A run trained under mixed_bfloat16 loads back computing in bfloat16; auto must not serve that."""
    import keras

    from kerasimg.models import build_classifier
    from kerasimg.training.precision import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        keras.utils.set_random_seed(0)
        trained_in_bfloat16 = build_classifier("small_cnn", len(CLASSES), image_size=32, weights="none")
    path, facts = _export(trained_in_bfloat16, images, tmp_path, "auto")
    assert facts["serves"] == "float32" and _conv_dtypes(path) == {"float32"}
    # A bfloat16 SavedModel on a CPU without bfloat16 is refused before it runs slowly or fails.
    monkeypatch.setattr(bfloat16, "cpu_computes_bfloat16", lambda: True)
    path, _ = _export(trained_in_bfloat16, images, tmp_path, "bfloat16")
    monkeypatch.setattr(bfloat16, "cpu_computes_bfloat16", lambda: False)
    with pytest.raises(UserError, match="this CPU has no bfloat16 instructions"):
        load_runtime(path, "savedmodel", "auto")
