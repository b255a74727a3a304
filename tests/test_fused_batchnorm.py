"""BatchNorm trained through TensorFlow's fused kernel: what Keras's layer computes, moving statistics too."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_batchnorm_folding import SIZE, classifier, outputs_and_gradients

from kerasimg.models.batchnorm_folding import FoldedConvBatchNorm, batchnorm_compute_model
from kerasimg.models.fused_batchnorm import FusedTrainingBatchNorm


def moving_statistics(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        v.path: v.numpy()
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    }


@pytest.mark.parametrize("fold", [False, True], ids=["standalone", "after-a-folded-conv"])
def test_fused_training_equals_keras_batchnorm_outputs_gradients_and_statistics(fold):
    # Two identical models (same seed, BatchNorm randomised away from 0/1); one trains as Keras
    # computes it, the other through the fused compute model.
    reference, model = (classifier("small_cnn", train_bn=True) for _ in range(2))
    compute = batchnorm_compute_model(model, fold=fold, fuse=True)
    wrapper = FoldedConvBatchNorm if fold else FusedTrainingBatchNorm
    assert sum(isinstance(la, wrapper) for la in compute._flatten_layers()) == 8
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    labels = np.array([0, 2, 1, 0])
    before = moving_statistics(model)
    expected, expected_gradients = outputs_and_gradients(reference, images, labels)
    actual, actual_gradients = outputs_and_gradients(compute, images, labels)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)
    assert actual_gradients.keys() == expected_gradients.keys()
    for path, gradient in expected_gradients.items():
        scale = np.abs(gradient).max() + 1e-12
        np.testing.assert_allclose(actual_gradients[path] / scale, gradient / scale, atol=1e-4, err_msg=path)
    # The moving statistics moved, by Keras's rule (biased batch variance, the layer's momentum).
    after, expected_after = moving_statistics(model), moving_statistics(reference)
    assert all(not np.allclose(after[k], before[k]) for k in before)
    for path, value in expected_after.items():
        np.testing.assert_allclose(after[path], value, rtol=1e-5, atol=1e-6, err_msg=path)


def test_frozen_or_inference_batchnorm_is_keras_own_path():
    frozen = classifier("small_cnn", train_bn=False)  # BatchNorm frozen: nothing to fuse
    assert batchnorm_compute_model(frozen, fold=False, fuse=True) is frozen
    model = classifier("small_cnn", train_bn=True)
    compute = batchnorm_compute_model(model, fold=False, fuse=True)
    images = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    before = moving_statistics(model)
    np.testing.assert_allclose(compute(images, training=False), model(images, training=False), rtol=1e-5)
    assert all(np.array_equal(v, before[k]) for k, v in moving_statistics(model).items())


def test_fused_batchnorm_keeps_keras_arguments():
    # scale=False, center=False and an odd epsilon/momentum reach the kernel as Keras reads them.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.BatchNormalization(scale=False, center=False, epsilon=0.1, momentum=0.5)(inputs)
    model = keras.Model(inputs, outputs)
    twin = keras.models.clone_model(model)
    x = tf.random.normal((3, 8, 8, 3), mean=2.0, stddev=3.0)
    compute = batchnorm_compute_model(twin, fold=False, fuse=True)
    np.testing.assert_allclose(compute(x, training=True), model(x, training=True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        [v.numpy() for v in twin.non_trainable_weights],
        [v.numpy() for v in model.non_trainable_weights],
        rtol=1e-5,
    )
