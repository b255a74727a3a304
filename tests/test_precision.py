"""--precision (bfloat16 mixed precision) and --strategy mirrored (two logical CPU devices)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import make_separable, tiny_config

import kerasimg.training.precision as precision_module
from kerasimg.errors import UserError
from kerasimg.training import fit
from kerasimg.training.precision import resolve_precision
from kerasimg.training.reports import read_history


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_trains_with_a_float32_output(tmp_path, policy, compute):
    data = make_separable(tmp_path / "data")
    config = tiny_config(data, tmp_path / "run", epochs=4, lr=3e-3, augment="none", precision=policy)
    optimizers = []

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizers.append(self.model.optimizer)

    fit(config, callbacks=[Spy()], log=lambda *_: None)
    rows = read_history(tmp_path / "run" / "history.csv")
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    # Learnt: an epoch's loss falls tenfold (one noisy last epoch of 3 steps is not the measure).
    assert min(r["loss"] for r in rows[1:]) < rows[0]["loss"] / 10, rows
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["precision"] == policy
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.get_layer("predictions").compute_dtype == "float32"
    convs = [layer for layer in model.get_layer("backbone").layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == compute for layer in convs)
    assert all(layer.kernel.dtype == "float32" for layer in convs)  # variables stay float32
    # float16's narrow exponent range needs the loss scaled; bfloat16 has float32's and does not.
    scaled = isinstance(optimizers[0], keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16"), type(optimizers[0])


def test_auto_precision_follows_the_hardware_and_the_measured_exceptions(monkeypatch):
    monkeypatch.setattr(precision_module, "gpu_compute_capability", lambda: None)
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(precision_module, "BF16_ON_CPU", frozenset({"resnet50"}))
    assert resolve_precision("auto", "resnet50") == "mixed_bfloat16"
    assert resolve_precision("auto", "small_cnn") == "float32"
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: frozenset())
    assert resolve_precision("auto", "resnet50") == "float32"
    for capability, policy in (((8, 6), "mixed_bfloat16"), ((7, 5), "mixed_float16"), ((6, 1), "float32")):
        monkeypatch.setattr(precision_module, "gpu_compute_capability", lambda c=capability: c)
        assert resolve_precision("auto", "small_cnn") == policy, capability
    assert resolve_precision("float32", "resnet50") == "float32"
    with pytest.raises(UserError, match="precision='fp8'"):
        resolve_precision("fp8")


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from kerasimg.training import FitConfig, fit
    from kerasimg.models import load_classifier

    import keras
    from kerasimg.models import build_classifier

    data, weights, out = sys.argv[1:4]
    keras.utils.set_random_seed(0)  # the driver's first draw: the initial weights of both runs
    initial = build_classifier("small_cnn", 6, image_size=32, weights=weights, dropout=0.0)
    np.savez(f"{out}/initial.npz", *[np.asarray(w) for w in initial.get_weights()])
    results = {}
    for strategy, batch in (("none", 32), ("mirrored", 16)):
        config = FitConfig(backbone="small_cnn", data=data, weights=weights, schedule="full", epochs=3,
                           batch_size=batch, image_size=32, augment="none", dropout=0.0, lr=1e-3,
                           strategy=strategy, out=f"{out}/{strategy}", seed=0)
        fit(config, log=lambda *a: None)
        config_json = json.load(open(f"{out}/{strategy}/config.json"))
        model = load_classifier(f"{out}/{strategy}/model.keras")
        np.savez(f"{out}/{strategy}.npz", *[np.asarray(w) for w in model.get_weights()])
        results[strategy] = config_json["resolved"]["replicas"]
    print(json.dumps(results))
    """
)


def test_mirrored_over_two_cpu_devices_matches_single_device(tiny_scenes, small_cnn_weights, tmp_path):
    """Same global batch (2 replicas x 16 vs 1 x 32), same seed: the same trained weights.

    BatchNorm stays frozen (pretrained weights, no --train-bn): unsynchronised BatchNorm
    would see per-replica batch statistics and legitimately differ. One batch holds the
    whole tiny training split: through a distributed dataset the seeded per-epoch shuffle
    came out in another order (identical initial weights, different first-batch loss), and
    with one batch per epoch the order cannot matter.
    """
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tiny_scenes), small_cnn_weights, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"none": 1, "mirrored": 2}
    single, mirrored = np.load(tmp_path / "none.npz"), np.load(tmp_path / "mirrored.npz")
    initial = np.load(tmp_path / "initial.npz")
    assert len(single.files) == len(mirrored.files) == len(initial.files) > 0
    flat = {
        k: np.concatenate([f[n].ravel() for n in f.files])
        for k, f in (("s", single), ("m", mirrored), ("i", initial))
    }
    moved = np.linalg.norm(flat["s"] - flat["i"])
    assert moved > 1e-3  # training changed the weights
    # Only float summation order differs (per-replica sums, then an all-reduce).
    assert np.linalg.norm(flat["m"] - flat["s"]) < 1e-3 * moved
