"""The training recipe: augmentation, label smoothing, schedules, EMA, class weights, TTA, presets."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import CrashAfterEpoch, tiny_config

import kerasimg.fit as fit_cli
from kerasimg.data import FileSplit
from kerasimg.data.augment import PRESETS, Augmenter, crop_boxes, parse_augment
from kerasimg.data.rand_augment import SelectiveRandAugment
from kerasimg.diagnose.predictions import split_probabilities
from kerasimg.errors import ArgumentError
from kerasimg.models import build_classifier
from kerasimg.training import fit, load_run_config
from kerasimg.training.recipe import (
    RECIPES,
    Recipe,
    class_weights,
    compile_classifier,
    learning_rate,
    resolve_recipe,
)
from kerasimg.training.reports import read_history


def quiet(*_):
    pass


@pytest.mark.parametrize("augment", [*PRESETS, "rrc:0.5,erasing:1", "cutmix:1", "mixup:0.4,flip"])
def test_every_augmentation_keeps_shape_range_and_label_mass(augment):
    images = tf.random.uniform([8, 32, 32, 3], 0, 255, seed=1)
    labels = tf.one_hot(tf.range(8) % 3, 3)
    augmented = Augmenter(parse_augment(augment), seed=0)
    for _ in range(2):
        out_images, out_labels = augmented(images, labels)
        assert out_images.shape == (8, 32, 32, 3) and out_images.dtype == tf.float32
        assert 0 <= float(tf.reduce_min(out_images)) and float(tf.reduce_max(out_images)) <= 255
        np.testing.assert_allclose(tf.reduce_sum(out_labels, axis=1), 1, rtol=1e-5)


def test_random_resized_crop_samples_like_crop_and_resize():
    """The crop is an affine transform (no warning per batch from TensorFlow's optimiser) with the
    same bilinear samples as ``tf.image.crop_and_resize``."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 37, 53, 3)).astype("float32")
    top, left = np.array([0, 0.1, 0.3, 0.5], "float32"), np.array([0, 0.2, 0.05, 0.4], "float32")
    height, width = np.array([1, 0.5, 0.6, 0.5], "float32"), np.array([1, 0.7, 0.3, 0.6], "float32")
    boxes = np.stack([top, left, top + height, left + width], axis=1)
    expected = tf.image.crop_and_resize(images, boxes, tf.range(4), (37, 53)).numpy()
    np.testing.assert_allclose(crop_boxes(images, top, left, height, width).numpy(), expected, atol=0.01)
    np.testing.assert_allclose(expected[0], images[0], atol=0.01)  # the whole image is itself


def test_the_strong_preset_runs_inside_tf_data_and_keeps_static_shapes():
    # Batched inside tf.data (batch size unknown to the graph), a crop that lost the static image
    # size made Keras's CutMix mix int32 and float32 sizes: fit --augment strong failed.
    images = tf.random.uniform([4, 32, 32, 3], 0, 255, seed=1)
    labels = tf.one_hot(tf.range(4) % 3, 3)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    dataset = dataset.map(Augmenter(parse_augment("strong"), seed=0))
    assert dataset.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    out_images, out_labels = next(iter(dataset))
    assert out_images.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(out_labels.numpy().sum(axis=1), 1, rtol=1e-5)


def test_selective_randaugment_equals_keras_for_the_same_draws():
    images = tf.random.uniform([4, 32, 32, 3], 0, 255, seed=1)
    settings = dict(value_range=(0, 255), num_ops=2, factor=0.9, seed=0)
    ours, theirs = SelectiveRandAugment(**settings), keras.layers.RandAugment(**settings)
    for _ in range(6):  # six draws of two operations out of fourteen
        draw = ours.get_random_transformation(images, training=True)
        expected = theirs.transform_images(images, draw)
        np.testing.assert_allclose(ours.transform_images(images, draw), expected, rtol=1e-4, atol=1e-3)
        assert not np.allclose(expected, images)


def test_mixing_really_mixes_labels():
    images = tf.random.uniform([16, 32, 32, 3], 0, 255, seed=2)
    labels = tf.one_hot(tf.range(16) % 4, 4)
    _, mixed = Augmenter(parse_augment("mixup:1.0"), seed=3)(images, labels)
    assert np.sum((mixed.numpy() > 0.01) & (mixed.numpy() < 0.99)) > 0, "soft labels appear"


@pytest.mark.parametrize(
    "augment, message",
    [
        ("blur", "'blur' is neither"),
        ("rrc:2", "out-of-range argument for rrc"),
        ("mixup:x", "needs numbers as mixup's arguments"),
        ("flip,flip", "lists flip twice"),
    ],
)
def test_bad_augment_lists_are_refused_by_name(augment, message):
    with pytest.raises(ArgumentError, match=message):
        parse_augment(augment)


def test_presets_expand_and_flags_override_them():
    modern = resolve_recipe("modern")
    assert modern.augment == "rrc:0.08,flip" and modern.optimizer == "adamw" and modern.label_smoothing == 0.1
    assert resolve_recipe("seed") == Recipe()
    assert resolve_recipe("modern", label_smoothing=0.0, augment="none").label_smoothing == 0.0
    with pytest.raises(ArgumentError, match="ema is a decay in"):
        resolve_recipe("seed", ema=1.5)


def test_the_label_smoothed_loss_is_keras_on_one_hot_labels():
    keras.utils.set_random_seed(0)
    model = build_classifier("small_cnn", 3, image_size=32, weights="none")
    compile_classifier(model, 1e-3, Recipe(label_smoothing=0.2))
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    probabilities = model.predict(x, verbose=0)
    smoothed = y * 0.8 + 0.2 / 3
    expected = float(np.mean(-np.sum(smoothed * np.log(probabilities), axis=1)))
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(expected, rel=1e-4)


def test_warmup_then_cosine_values_at_the_phase_boundaries():
    recipe = Recipe(warmup_epochs=1, lr_schedule="cosine")
    schedule = learning_rate(recipe, 0.1, steps_per_epoch=10, epochs=4)
    at = [float(schedule(step)) for step in (0, 5, 10, 25, 40)]
    assert at[0] == pytest.approx(0.0) and at[1] == pytest.approx(0.05)
    assert at[2] == pytest.approx(0.1) and at[3] == pytest.approx(0.05, rel=1e-3) and at[4] < 1e-6
    assert learning_rate(Recipe(), 0.1, 10, 4) == 0.1, "the seed recipe keeps a constant rate"


def test_resume_mid_schedule_continues_the_same_learning_rate_curve(tiny_scenes, tmp_path):
    settings = dict(epochs=3, recipe="modern", augment="none", tta="none")
    fit(tiny_config(tiny_scenes, tmp_path / "whole", **settings), log=quiet)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tiny_scenes, tmp_path / "cut", **settings), callbacks=[CrashAfterEpoch(0)], log=quiet)
    logged = []
    fit(load_run_config(tmp_path / "cut"), resume=True, log=logged.append)
    assert not [line for line in logged if "--weights none" in line], "the run's start said it once"
    whole = [r["lr"] for r in read_history(tmp_path / "whole" / "history.csv")]
    cut = [r["lr"] for r in read_history(tmp_path / "cut" / "history.csv")]
    assert len(whole) == 3 and whole[0] > whole[1] > whole[2]
    np.testing.assert_allclose(cut, whole, rtol=1e-6)


class Capture(keras.callbacks.Callback):
    """Each epoch's model weights and the optimizer's other copy, after the EMA swap."""

    def on_train_begin(self, logs=None):
        self.model_weights, self.other = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.model_weights.append([w.numpy().copy() for w in self.model.optimizer._trainable_variables])
        self.other.append([w.numpy().copy() for w in self.model.optimizer._model_variables_moving_average])


def test_ema_weights_are_validated_and_saved(tiny_scenes, tmp_path):
    capture = Capture()
    fit(tiny_config(tiny_scenes, tmp_path / "run", epochs=2, ema=0.9), callbacks=[capture], log=quiet)
    # After epoch 1 of 2 the model holds the EMA weights and the optimizer keeps the raw ones.
    ema, raw = capture.model_weights[0], capture.other[0]
    assert any(not np.allclose(a, b) for a, b in zip(ema, raw)), "EMA weights differ from the raw ones"
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    by_path = {v.path: v.numpy() for v in saved.trainable_weights}
    names = [v.path for v in saved.trainable_weights]
    epochs_matching = [
        e
        for e, weights in enumerate(capture.model_weights)
        if all(np.allclose(by_path[n], w) for n, w in zip(names, weights))
    ]
    assert epochs_matching, "model.keras holds an epoch's EMA weights"
    assert not all(np.allclose(by_path[n], w) for n, w in zip(names, raw))


def test_class_weights_auto_are_inverse_frequency_and_change_the_loss():
    weights = class_weights(Recipe(class_weight="auto"), ["a", "b"], [90, 10])
    assert weights == pytest.approx({0: 100 / 180, 1: 100 / 20})
    keras.utils.set_random_seed(0)
    model = compile_classifier(build_classifier("small_cnn", 2, image_size=32, weights="none"), 0.0)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.array([0] * 7 + [1])
    plain = model.fit(x, y, epochs=1, verbose=0).history["loss"][0]
    weighted = model.fit(x, y, epochs=1, verbose=0, class_weight=weights).history["loss"][0]
    assert weighted != pytest.approx(plain, rel=1e-3)


@pytest.fixture(scope="module")
def imbalanced_scenes(tmp_path_factory):
    """Two demo classes at 10:1 in train (40:4), balanced in validation (5:5) and test (20:20).

    A validation split at 10:1 would choose, in both runs, the epoch that calls everything forest.
    """
    from kerasimg.data.scenes import ensure_scenes

    source = ensure_scenes(40, 20, 0, seed=0, root=tmp_path_factory.mktemp("scenes") / "all")
    root = tmp_path_factory.mktemp("imbalanced")
    counts = {"forest": (40, 5, 20), "glacier": (4, 5, 20)}
    for name, (train, val, test) in counts.items():
        trained = sorted((source / "seg_train" / "seg_train" / name).iterdir())
        tested = sorted((source / "seg_test" / "seg_test" / name).iterdir())
        for split, files in (
            ("train", trained[:train]),
            ("val", trained[train : train + val]),
            ("test", tested[:test]),
        ):
            (root / split / name).mkdir(parents=True)
            for file in files:
                (root / split / name / file.name).write_bytes(file.read_bytes())
    return root


def test_auto_class_weights_raise_the_minority_recall_on_a_10_to_1_split(
    imbalanced_scenes, small_cnn_weights, tmp_path
):
    # A linear probe on cached features: many cheap steps, and no BatchNorm statistics still settling
    # (a from-scratch net's would decide the test predictions after so few steps).
    recalls = {}
    for weighting in ("none", "auto"):
        out = tmp_path / weighting
        config = tiny_config(
            imbalanced_scenes, out, weights=small_cnn_weights, epochs=8, lr=0.01, class_weight=weighting
        )
        fit(config, log=quiet)
        metrics = json.loads((out / "metrics.json").read_text())
        recalls[weighting] = metrics["per_class"]["glacier"]["recall"]
    assert recalls["auto"] > recalls["none"], recalls


def test_tta_mirrors_every_image_of_the_split(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_classifier("small_cnn", 3, image_size=32, weights="none")
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    paths = []
    for i, image in enumerate(x):  # PNG: the pixels come back exactly
        paths.append(str(tmp_path / f"{i}.png"))
        Path(paths[-1]).write_bytes(tf.io.encode_png(image).numpy())
    split = FileSplit(paths, [0, 1, 2])
    mirrored = split_probabilities(model, split, 32, 2, mirrored=True)
    np.testing.assert_allclose(mirrored, model.predict(x[:, :, ::-1].astype("float32"), verbose=0), atol=1e-5)
    assert not np.allclose(mirrored, split_probabilities(model, split, 32, 2), atol=1e-3)


def test_modern_recipe_records_resolved_values_and_trains_on_images(tiny_scenes, small_cnn_weights, tmp_path):
    lines = []
    config = tiny_config(tiny_scenes, tmp_path / "run", weights=small_cnn_weights, epochs=1, recipe="modern")
    fit(config, log=lines.append)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["recipe"]
    assert resolved == {**RECIPES["modern"].to_json(), "augment": "rrc:0.08,flip"}
    assert any("trains on images rather than on cached features" in line for line in lines)
    assert "lr" in read_history(tmp_path / "run" / "history.csv")[0]


def test_cli_refuses_a_bad_augment_with_the_flag(capsys):
    assert fit_cli.main(["--augment", "rotate", "--weights", "none"]) == 2
    assert "--augment takes a preset" in capsys.readouterr().err


def test_the_schedule_counts_batches_even_when_gradients_accumulate():
    schedule = learning_rate(Recipe(warmup_epochs=1, lr_schedule="cosine", grad_accum=4), 0.1, 100, 4)
    assert float(schedule(100)) == pytest.approx(0.1) and float(schedule(250)) == pytest.approx(
        0.05, rel=1e-3
    )


@pytest.mark.parametrize(
    "content, message",
    [('{"forest": "x"}', "numbers >= 0"), ("5", "JSON object"), ("{not json", "could not be read as JSON")],
)
def test_class_weight_files_are_checked_before_anything_runs(tmp_path, content, message):
    path = tmp_path / "weights.json"
    path.write_text(content)
    with pytest.raises(ArgumentError, match=message):
        resolve_recipe("seed", class_weight=str(path))
    with pytest.raises(ArgumentError, match="finite"):
        resolve_recipe("seed", warmup_epochs=float("nan"))
