"""Freezing schedules: phases parse right, frozen really is frozen, one continuous history."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import CrashAfterEpoch, tiny_config

from kerasimg.errors import UserError
from kerasimg.models import backbone_of, build_classifier, get_backbone, stage_layers
from kerasimg.training import fit, load_run_config
from kerasimg.training.reports import read_history
from kerasimg.training.schedules import Phase, apply_phase, parse_schedule

STAGES = ["conv2", "conv3", "conv4", "conv5"]


def starts(phases):
    return [(p.start, p.end, p.unfrozen) for p in phases]


@pytest.mark.parametrize(
    "schedule, epochs, expected",
    [
        ("linear-probe", 4, [(0, 4, "head")]),
        ("last-block", 4, [(0, 4, "conv5")]),
        ("full", 3, [(0, 3, "all")]),
        ("gradual", 7, [(0, 2, "head"), (2, 4, "conv5"), (4, 6, "conv4"), (6, 7, "conv3")]),
        ("probe-then-last:10,5", 1, [(0, 10, "head"), (10, 15, "conv5")]),
        ("0:head,5:conv5,8:conv3", 10, [(0, 5, "head"), (5, 8, "conv5"), (8, 10, "conv3")]),
    ],
)
def test_schedules_resolve_to_phases(schedule, epochs, expected):
    phases = parse_schedule(schedule, STAGES, epochs, lr=1e-3, finetune_lr=1e-4, unfreeze_every=2)
    assert starts(phases) == expected
    assert all(p.lr == (1e-3 if p.unfrozen == "head" else 1e-4) for p in phases)


@pytest.mark.parametrize(
    "schedule, message",
    [
        ("0:head,5:conv9", "Unknown stage 'conv9'.*conv2, conv3"),
        ("2:head,5:conv5", "must start at 0 and increase"),
        ("0:head,5:conv5,5:conv4", "must start at 0 and increase"),
        ("0:head,20:conv5", "starts a phase at epoch 20.*raise --epochs"),
        ("probe-then-last:3", "probe-then-last:N,M"),
        ("sometimes", "Unknown schedule.*Received: schedule='sometimes'"),
    ],
)
def test_bad_schedules_are_clear_errors(schedule, message):
    with pytest.raises(UserError, match=message):
        parse_schedule(schedule, STAGES, 10, lr=1e-3, finetune_lr=1e-4)


def stage_values(model, stage):
    spec = get_backbone("small_cnn")
    layers = stage_layers(backbone_of(model), spec)[stage]
    return {v.path: v.numpy().copy() for layer in layers for v in layer.weights}


def train_a_few_steps(model):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, 16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, batch_size=8, epochs=2, verbose=0)


@pytest.mark.parametrize("train_bn", [False, True])
def test_frozen_stages_are_bit_identical_and_unfrozen_ones_train(train_bn):
    keras.utils.set_random_seed(0)
    model = build_classifier("small_cnn", 3, image_size=32, weights="none")
    spec = get_backbone("small_cnn")
    apply_phase(model, spec, Phase(0, 2, "block3", 1e-3), train_bn=train_bn)
    before = {stage: stage_values(model, stage) for stage in spec.stage_names}
    train_a_few_steps(model)
    for stage in ("block1", "block2"):
        for path, value in stage_values(model, stage).items():
            np.testing.assert_array_equal(value, before[stage][path], err_msg=path)
    for stage in ("block3", "block4"):
        after = stage_values(model, stage)
        kernels = [p for p in after if p.endswith("kernel")]
        assert all(not np.array_equal(after[p], before[stage][p]) for p in kernels)
        moving = [p for p in after if "moving" in p]
        assert moving
        changed = [not np.array_equal(after[p], before[stage][p]) for p in moving]
        assert all(changed) if train_bn else not any(changed), "BatchNorm statistics follow --train-bn"


class RecordTrainable(keras.callbacks.Callback):
    """Remember how many weights train in each epoch (the callback reaches the model via set_model)."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def on_epoch_begin(self, epoch, logs=None):
        self.log[epoch] = len(self.model.trainable_weights)


def scheduled_config(data, out, weights, **overrides):
    """The tiny config from pretrained ``weights`` with a three-phase schedule over 4 epochs."""
    settings = dict(weights=weights, epochs=4, schedule="0:head,1:block4,3:block3")
    return tiny_config(data, out, **{**settings, **overrides})


def test_phase_boundaries_fall_on_the_right_epochs(tiny_scenes, small_cnn_weights, tmp_path):
    seen = {}
    fit(
        scheduled_config(tiny_scenes, tmp_path / "run", small_cnn_weights),
        callbacks=[RecordTrainable(seen)],
        log=lambda *_: None,
    )
    # Epoch 0 trains the head on cached features (a separate model: 2 weights); then block4
    # (2 convs, head), then block3 as well. BatchNorm stays frozen.
    assert seen[0] == 2 and seen[1] == seen[2] == 4 and seen[3] == 6
    rows = read_history(tmp_path / "run" / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [(p["start"], p["end"], p["unfrozen"]) for p in config["resolved"]["phases"]] == [
        (0, 1, "head"),
        (1, 3, "block4"),
        (3, 4, "block3"),
    ]
    assert config["resolved"]["phases"][1]["lr"] == pytest.approx(1e-4), "fine-tuning phases default to lr/10"
    # A finished run keeps only its last phase's state, which a larger --epochs extends.
    assert [p.name for p in (tmp_path / "run" / "backup").iterdir()] == ["phase-2"]


@pytest.mark.parametrize("crash_after", [0, 1])
def test_resume_mid_schedule_keeps_the_phase_structure(tiny_scenes, small_cnn_weights, tmp_path, crash_after):
    """Ctrl-C at a phase's end (0) or inside one (1): nothing done is lost; the resumed history is one."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(
            scheduled_config(tiny_scenes, out, small_cnn_weights),
            callbacks=[CrashAfterEpoch(crash_after)],
            log=lambda *_: None,
        )
    assert (out / "model.keras").exists() and (out / "curves.png").exists(), "nothing done is lost"
    assert not (out / "metrics.json").exists()
    config = load_run_config(out)
    assert config.epochs == 4 and config.backbone == "small_cnn"
    seen = {}
    fit(config, resume=True, callbacks=[RecordTrainable(seen)], log=lambda *_: None)
    assert min(seen) == crash_after + 1, "completed epochs are not trained again"
    expected = {1: 4, 2: 4, 3: 6}
    assert seen == {e: expected[e] for e in seen}
    rows = read_history(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert len((out / "history.csv").read_text().strip().splitlines()) == 5
    assert (out / "metrics.json").exists()
    with pytest.raises(UserError, match="already finished"):
        load_run_config(out)


def test_cached_features_train_the_head_like_images_do(tiny_scenes, small_cnn_weights, tmp_path):
    histories, heads = [], []
    for cache in (True, False):
        out = tmp_path / f"cache-{cache}"
        config = scheduled_config(
            tiny_scenes,
            out,
            small_cnn_weights,
            schedule="linear-probe",
            epochs=3,
            augment="none",
            dropout=0.0,
            feature_cache=cache,
            lr=1e-2,
        )
        fit(config, log=lambda *_: None)
        histories.append(read_history(out / "history.csv"))
        heads.append(keras.saving.load_model(out / "model.keras").get_layer("predictions").get_weights())
    assert (tmp_path / "cache-True" / "features").is_dir()
    assert not (tmp_path / "cache-False" / "features").exists()
    for cached_row, image_row in zip(*histories):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert cached_row[key] == pytest.approx(image_row[key], rel=1e-4, abs=1e-5), key
    for cached_w, image_w in zip(*heads):
        np.testing.assert_allclose(cached_w, image_w, rtol=1e-4, atol=1e-5)
