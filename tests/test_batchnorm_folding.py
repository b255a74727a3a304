"""Frozen BatchNorm folded into the convolution: the same function and gradients, the same saved model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasimg.models import backbone_of, build_classifier, get_backbone, load_classifier
from kerasimg.models.batchnorm_folding import (
    FoldedConvBatchNorm,
    batchnorm_compute_model,
    fold_frozen_batchnorm,
    foldable_pairs,
    folded_for_inference,
)
from kerasimg.models.fused_batchnorm import FusedTrainingBatchNorm
from kerasimg.training.precision import dtype_policy
from kerasimg.training.schedules import ALL, HEAD, Phase, apply_phase

SIZE = 32


def randomise_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Statistics and affine terms away from the initial 0/1, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta):
                variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))


def classifier(backbone: str, policy: str = "float32", unfrozen: str = ALL, train_bn: bool = False):
    keras.utils.set_random_seed(0)
    with dtype_policy(policy):
        model = build_classifier(backbone, 3, image_size=SIZE, weights="none", dropout=0.0)
    randomise_batchnorm(model)
    apply_phase(model, get_backbone(backbone), Phase(0, 1, unfrozen, 1e-3), train_bn)
    return model


def depthwise_model() -> keras.Model:
    """Depthwise conv -> BN (with a depth multiplier) and conv-with-bias -> BN: the other kernel layouts."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)  # unsaturated outputs, comparable gradients
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="dw_bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.Conv2D(4, 1, strides=2, use_bias=True, name="pointwise")(x)
    x = keras.layers.BatchNormalization(epsilon=1.001e-5, name="pointwise_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    randomise_batchnorm(model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def outputs_and_gradients(model: keras.Model, images, labels, training: bool = True):
    with tf.GradientTape() as tape:
        probabilities = model(images, training=training)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    gradients = tape.gradient(loss, model.trainable_variables)
    return probabilities.numpy(), {v.path: g.numpy() for v, g in zip(model.trainable_variables, gradients)}


def assert_same_function_and_gradients(model, folded, rtol=1e-4, atol=1e-6):
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    labels = np.array([0, 2])
    expected, expected_gradients = outputs_and_gradients(model, images, labels)
    actual, actual_gradients = outputs_and_gradients(folded, images, labels)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    # The same variables train (the compute model shares them), with the same gradients.
    assert actual_gradients.keys() == expected_gradients.keys() and expected_gradients
    for path, gradient in expected_gradients.items():
        scale = np.abs(gradient).max() + 1e-12
        np.testing.assert_allclose(actual_gradients[path] / scale, gradient / scale, atol=rtol, err_msg=path)
    np.testing.assert_allclose(
        folded.predict_on_batch(images), model.predict_on_batch(images), rtol=rtol, atol=atol
    )


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet50"])
def test_folded_classifier_computes_the_same_outputs_and_gradients(backbone):
    model = classifier(backbone)
    folded = fold_frozen_batchnorm(model)
    # ResNet-50: every convolution is followed by its BatchNorm (stem + 16 blocks of 3 + 4 shortcuts).
    expected_pairs = {"small_cnn": 8, "resnet50": 53}[backbone]
    assert len(foldable_pairs(backbone_of(model))) == expected_pairs
    folded_layers = [la for la in backbone_of(folded).layers if isinstance(la, FoldedConvBatchNorm)]
    assert len(folded_layers) == expected_pairs
    assert {id(v) for v in folded.weights} == {id(v) for v in model.weights}
    assert_same_function_and_gradients(model, folded)


def test_depthwise_and_biased_convolutions_fold_too():
    model = depthwise_model()
    folded = fold_frozen_batchnorm(model)
    assert sum(isinstance(la, FoldedConvBatchNorm) for la in folded.layers) == 2
    assert_same_function_and_gradients(model, folded)


def test_batchnorm_that_trains_runs_unfolded_with_batch_statistics():
    model = classifier("small_cnn", train_bn=True)
    assert_same_function_and_gradients(model, fold_frozen_batchnorm(model))


def test_training_the_folded_model_trains_the_saved_one_unchanged_in_structure(tmp_path):
    model = classifier("small_cnn", unfrozen="block4")
    folded = fold_frozen_batchnorm(model)
    folded.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = [v.numpy().copy() for v in model.trainable_variables]
    images = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    folded.train_on_batch(images, np.array([0, 1, 2, 0]))
    # Only the unfrozen stage and the head moved, in the original model's own variables.
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    folded.save(tmp_path / "model.keras")  # what ModelCheckpoint calls: it writes the original model
    loaded = load_classifier(tmp_path / "model.keras")
    assert [type(la) for la in backbone_of(loaded).layers] == [type(la) for la in backbone_of(model).layers]
    assert not any(isinstance(la, FoldedConvBatchNorm) for la in loaded._flatten_layers())
    np.testing.assert_allclose(loaded.predict_on_batch(images), folded.predict_on_batch(images), rtol=1e-4)


def test_frozen_backbone_folds_and_trains_only_the_head():
    model = classifier("small_cnn", unfrozen=HEAD)
    folded = fold_frozen_batchnorm(model)
    assert [v.path for v in folded.trainable_variables] == [v.path for v in model.trainable_variables]
    assert_same_function_and_gradients(model, folded)


@pytest.mark.parametrize(
    "build", [depthwise_model, lambda: classifier("small_cnn")], ids=["depthwise", "small_cnn"]
)
def test_bfloat16_folded_model_stays_close_to_float32(build):
    # The fast path under mixed_bfloat16 (folded kernels rounded once to bfloat16, the depthwise
    # kernel gradient in float32) against the plain float32 model with the same weights.
    reference = build()
    with dtype_policy("mixed_bfloat16"):
        model = build()
    model.set_weights(reference.get_weights())
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    labels = np.array([0, 2])
    expected, expected_gradients = outputs_and_gradients(reference, images, labels)
    _, unfolded_gradients = outputs_and_gradients(model, images, labels)
    actual, actual_gradients = outputs_and_gradients(fold_frozen_batchnorm(model), images, labels)
    np.testing.assert_allclose(actual, expected, atol=2e-2)
    # bfloat16 keeps 8 significant bits, so a bias gradient summed with cancellation can be far off
    # element by element (the unfolded bfloat16 model's is too); each kernel's gradient points the same
    # way. How closely depends on the CPU's bfloat16 kernels (on an AVX2-only CPU the unfolded model's
    # pointwise gradient is itself at cosine 0.92): the fold must add no error beyond bfloat16's own.
    assert actual_gradients.keys() == expected_gradients.keys()

    def cosine(a, b):
        a, b = a.ravel(), b.ravel()
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    for path, gradient in expected_gradients.items():
        if path.endswith("kernel"):
            bar = min(0.99, cosine(unfolded_gradients[path], gradient) - 0.02)
            assert cosine(actual_gradients[path], gradient) > bar, path


@pytest.mark.parametrize(
    "weights, precision, fold_bn, computes_with",
    [
        ("pretrained", "mixed_bfloat16", True, FoldedConvBatchNorm),  # BatchNorm frozen: folded
        ("none", "float32", True, FusedTrainingBatchNorm),  # from scratch, BatchNorm trains: fused
        ("none", "float32", False, None),  # --no-fold-bn: Keras's own layers
    ],
)
def test_fit_computes_batchnorm_fast_unless_told_not_to(
    weights, precision, fold_bn, computes_with, tiny_scenes, tmp_path, monkeypatch
):
    from helpers import tiny_config

    from kerasimg.training import fit, phase_sources

    computed = []

    def spy(model, **kwargs):
        computed.append(batchnorm_compute_model(model, **kwargs))
        return computed[-1]

    monkeypatch.setattr(phase_sources, "batchnorm_compute_model", spy)
    if weights == "pretrained":  # BatchNorm frozen when the backbone starts from weights
        source = build_classifier("small_cnn", 6, image_size=32, weights="none")
        weights = str(tmp_path / "backbone.weights.h5")
        backbone_of(source).save_weights(weights)
    config = tiny_config(
        tiny_scenes,
        tmp_path / "run",
        weights=weights,
        schedule="full",
        epochs=1,
        precision=precision,
        fold_bn=fold_bn,
    )
    fit(config, log=lambda *a: None)
    assert len(computed) == int(fold_bn)
    if computes_with:
        assert any(isinstance(la, computes_with) for la in computed[0]._flatten_layers())
    loaded = load_classifier(tmp_path / "run" / "model.keras")  # Keras's own layers either way
    assert not any(
        isinstance(la, (FoldedConvBatchNorm, FusedTrainingBatchNorm)) for la in loaded._flatten_layers()
    )


@pytest.mark.parametrize(
    "build", [depthwise_model, lambda: classifier("small_cnn")], ids=["depthwise", "small_cnn"]
)
def test_the_inference_copy_has_no_batchnorm_and_computes_the_same(build):
    from kerasimg.models.batchnorm_folding import folded_for_inference

    model = build()
    folded = folded_for_inference(model)
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in folded._flatten_layers())
    assert not any(
        isinstance(la, FoldedConvBatchNorm) for la in folded._flatten_layers()
    )  # Keras's own layers
    images = np.random.default_rng(4).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(
        folded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-4, atol=1e-6
    )


def test_an_export_serves_batchnorm_folded_into_fixed_weights(tmp_path):
    from kerasimg.serving import export_model
    from kerasimg.serving.signatures import PIXELS_INPUT

    model = classifier("small_cnn")  # BatchNorm statistics away from 0/1: a wrong fold shows
    path = export_model(model, ["a", "b", "c"], SIZE, "folded", tmp_path / "zoo")
    loaded = tf.saved_model.load(str(path))
    names = [v.name for v in loaded.signatures["predict_images"].graph.variables]
    assert names and not [n for n in names if "moving_mean" in n or "moving_variance" in n], names
    # Each folded weight stored once (Keras's ExportArchive.track() would store every one twice).
    shapes = tf.train.load_checkpoint(str(path / "variables" / "variables")).get_variable_to_shape_map()
    stored = sum(int(np.prod(shape)) for key, shape in shapes.items() if key.endswith("VARIABLE_VALUE"))
    assert stored == folded_for_inference(model).count_params() < model.count_params()
    images = np.random.default_rng(5).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    served = loaded.signatures["predict_images"](**{PIXELS_INPUT: tf.constant(images)})["probabilities"]
    np.testing.assert_allclose(served.numpy(), model.predict_on_batch(images), rtol=1e-4, atol=1e-6)
