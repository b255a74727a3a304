"""The boundary-activation cache and --cache-views: cached training equals image training."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import tiny_config

from kerasimg.errors import ArgumentError
from kerasimg.models import build_classifier
from kerasimg.models.registry import BackboneSpec
from kerasimg.training import feature_cache, fit
from kerasimg.training.boundary_cache import CutRefused, boundary_stage, split_at_stage
from kerasimg.training.config import FitConfig
from kerasimg.training.feature_cache import CachedViews, extract, view_order, views_dataset
from kerasimg.training.precision import dtype_policy
from kerasimg.training.reports import read_history
from kerasimg.training.schedules import parse_schedule


def test_boundary_cache_trains_like_images_from_one_extraction(tiny_scenes, small_cnn_weights, tmp_path):
    histories, weights, logs = [], [], []
    for cache in (True, False):
        out = tmp_path / f"cache-{cache}"
        logs.append([])
        config = tiny_config(
            tiny_scenes,
            out,
            weights=small_cnn_weights,
            schedule="probe-then-last:1,2",
            augment="none",
            dropout=0.0,
            feature_cache=cache,
            train_bn=True,  # block4's BatchNorm trains on batch statistics; frozen ones run inference
            lr=1e-2,
            finetune_lr=1e-2,
        )
        fit(config, log=logs[-1].append)
        histories.append(read_history(out / "history.csv"))
        weights.append(keras.saving.load_model(out / "model.keras").get_weights())
    cached_log = "\n".join(logs[0])
    # One pass over the images: the probe's pooled features come from the cached block4 inputs.
    assert cached_log.count("Caching the inputs of block4 for train") == 1
    assert cached_log.count("Caching pooled features from the cached inputs of block4 for train") == 1
    assert (
        "epochs 2-3, backbone unfrozen from block4 up, lr 0.01, on the cached inputs of block4" in cached_log
    )
    assert not (tmp_path / "cache-False" / "features").exists(), "--no-feature-cache turns off both caches"
    assert "cached" not in "\n".join(logs[1])
    assert [len(h) for h in histories] == [3, 3]
    for cached_row, image_row in zip(*histories):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert cached_row[key] == pytest.approx(image_row[key], rel=1e-4, abs=1e-5), key
    for cached_w, image_w in zip(*weights):  # block4's convolutions (and BatchNorm) trained alike
        np.testing.assert_allclose(cached_w, image_w, rtol=1e-4, atol=1e-5)


def test_cache_views_holds_k_augmented_views(tiny_scenes, small_cnn_weights, tmp_path):
    out = tmp_path / "run"
    log = []
    config = tiny_config(
        tiny_scenes, out, weights=small_cnn_weights, schedule="linear-probe", epochs=1, augment="light"
    )
    fit(FitConfig(**{**config.__dict__, "cache_views": 3}), log=log.append)
    assert "on cached features" in "\n".join(log)
    (meta,) = [json.loads(p.read_text()) for p in (out / "features").glob("train-*[0-9a-f].json")]
    assert (
        meta["views"] == ["augmented-1", "augmented-2", "augmented-3"] and meta["augment"] == "rrc:0.08,flip"
    )
    (array,) = [np.load(p) for p in (out / "features").glob("train-*[0-9a-f].npy")]
    assert array.shape[:2] == (meta["count"], 3)
    assert not np.allclose(array[:, 0], array[:, 1]), "the views are different augmentations"


def test_each_epoch_draws_one_of_the_k_views_per_image():
    rows, views = 6, 3
    array = (10 * np.arange(rows)[:, None] + np.arange(views)[None, :]).astype("float32")[..., None]
    source = CachedViews(array, np.arange(rows) % 2, "float32")
    dataset = views_dataset(source, view_order(source.labels, views, training=True, seed=1), 4)
    drawn = {row: set() for row in range(rows)}
    for _ in range(30):
        values = np.concatenate([x.numpy()[:, 0] for x, _ in dataset])
        assert sorted(values // 10) == list(range(rows)), "every image once per epoch"
        for value in values:
            drawn[int(value // 10)].add(int(value % 10))
    assert all(seen == {0, 1, 2} for seen in drawn.values())


@pytest.mark.parametrize(
    ("augment", "cache_views", "match"),
    [
        ("strong", 2, "mixup and cutmix mix pairs of images"),
        ("flip", 2, "is for augmentation beyond flips"),
        ("light", 0, "must be at least 1"),
    ],
)
def test_cache_views_refusals(augment, cache_views, match):
    with pytest.raises(ArgumentError, match=match):
        FitConfig(backbone="small_cnn", augment=augment, cache_views=cache_views).resolve()


def test_heavy_augmentation_without_cache_views_trains_on_images():
    assert FitConfig(backbone="small_cnn", augment="light").resolve().cached_views is None


def test_boundary_sits_below_the_lowest_stage_trained_before_full_unfreezing():
    stages = ["block1", "block2", "block3", "block4"]

    def boundary(schedule, epochs):
        return boundary_stage(parse_schedule(schedule, stages, epochs, lr=1, finetune_lr=1), stages)

    assert boundary("gradual", 6) == "block3"  # head, then block4 at epoch 2, block3 at 4
    assert boundary("0:block4,2:all,4:block1", 6) == "block4", "nothing is cached once all of it trains"
    assert boundary("linear-probe", 2) is None


def _skipping_backbone(input_shape, weights=None):
    inputs = keras.Input(input_shape)
    stem = keras.layers.Conv2D(4, 3, padding="same", name="block1_a")(inputs)
    end = keras.layers.Conv2D(4, 3, padding="same", name="block1_out")(stem)
    y = keras.layers.Conv2D(4, 3, padding="same", name="block2_conv")(end)
    y = keras.layers.Add(name="block2_add")([y, stem])  # a shortcut over the end of block1
    return keras.Model(inputs, y, name="backbone")


def test_a_cut_that_a_connection_skips_is_refused():
    spec = BackboneSpec(
        "skipping", _skipping_backbone, 32, "none", 4, (("block1", "block1_"), ("block2", "block2_"))
    )
    model = build_classifier(spec, 2, weights=None)
    with pytest.raises(CutRefused, match="skips over the end of stage 'block1' \\(block1_out\\)"):
        split_at_stage(model, spec, "block2")
    with pytest.raises(CutRefused, match="nothing of skipping is frozen below"):
        split_at_stage(model, spec, "block1")


def test_bfloat16_activations_are_stored_as_their_bits_and_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "RAM_LIMIT_BYTES", 0)  # so it streams from disk
    with dtype_policy("mixed_bfloat16"):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    batches = [([x[:4], -x[:4]], np.arange(4)), ([x[4:], -x[4:]], np.arange(4, 6))]
    cached = extract(
        model, batches, split=None, count=6, cache_dir=tmp_path, name="train", identity={"views": ["a", "b"]}
    )
    assert cached.dtype == "bfloat16" and cached.array.dtype == np.uint16 and cached.array.shape == (6, 2, 5)
    assert cached.streamed
    (values, labels), *_ = views_dataset(cached, view_order(cached.labels, 2, training=False), 6)
    expected = model.predict(x, verbose=0)
    assert expected.dtype.name == "bfloat16"
    np.testing.assert_array_equal(values.numpy(), expected.astype("float32"))
    assert labels.numpy().tolist() == list(range(6))
