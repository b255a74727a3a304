"""``--precision float32 | mixed_bfloat16 | mixed_float16 | auto``: Keras dtype policies, chosen by hardware.

Under the mixed policies layers compute in 16 bits and keep float32 variables; the
classifier's output layer stays float32 (``build_classifier`` sets it), as the Keras
mixed-precision guide asks. bfloat16 has float32's exponent range, so no loss
scaling is needed; float16 has not, and Keras's ``compile`` wraps the optimizer in a
``LossScaleOptimizer`` for a ``mixed_float16`` model. ``auto`` picks bfloat16 where the
hardware computes it natively: NVIDIA GPUs of compute capability 8.0 or newer, and CPUs
with AMX-BF16 or AVX512-BF16 (oneDNN then runs AMX/BF16 kernels) only for backbones
where it was measured faster (``BF16_ON_CPU``); float16 on GPUs of capability 7.x (Volta,
Turing: tensor cores without bfloat16). Only the CPU paths were measured here.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import keras

from kerasimg.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# Backbones that ``auto`` trains in bfloat16 on a CPU: those measured faster there, train step
# at 224 px, batch 32, on 2 cores with AMX (python -m kerasimg.bench --mode train
# --precision float32 --precision mixed_bfloat16): resnet50 1.22x, resnext50_32x4d 1.12x,
# vit_small16 1.51x. Not listed, so float32: densenet201 (1.04x, within noise) and
# efficientnet_b0 (0.65x). Its cause, measured with ONEDNN_VERBOSE: oneDNN's bfloat16 depthwise
# *weight* gradient is a generic kernel (jit_bf16), 3.3x slower than float32's. Folding frozen
# BatchNorm (models/batchnorm_folding.py) computes that gradient in float32 and lifts bfloat16
# from 0.43x to 0.66x of float32 folded (bench --fold-bn off --fold-bn on, train, 224 px, batch
# 32); swish and squeeze-excite, element-wise in bfloat16, keep it below 1, so it stays float32.
BF16_ON_CPU: frozenset[str] = frozenset({"resnet50", "resnext50_32x4d", "vit_small16"})


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", frozenset()
    name, flags = "", set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
        elif line.startswith("model name") and not name:
            name = line.split(":", 1)[1].strip()
    return name, frozenset(flags)


def cpu_bf16_flags() -> frozenset[str]:
    """The CPU's bfloat16 feature flags (empty where /proc/cpuinfo cannot be read)."""
    return _cpuinfo()[1] & {"amx_bf16", "avx512_bf16"}


# The vector flags a speed figure depends on, named beside every benchmark's figures.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_description() -> str:
    """``"<model name> (avx2, avx512f)"``: the CPU and which of ``SPEED_FLAGS`` it has."""
    name, flags = _cpuinfo()
    present = [f for f in SPEED_FLAGS if f in flags]
    return f"{name or 'unknown CPU'} ({', '.join(present) or 'none of ' + ', '.join(SPEED_FLAGS)})"


@functools.cache
def gpu_compute_capability() -> tuple[int, int] | None:
    """The lowest compute capability among the visible GPUs (the slowest sets the pace), None without one."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = (tf.config.experimental.get_device_details(g) for g in gpus)
    return min(tuple(d.get("compute_capability", (0, 0))) for d in details)


def resolve_precision(precision: str, backbone: str | None = None) -> str:
    """The Keras dtype policy name for ``--precision``; ``auto`` decided by hardware and backbone."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    capability = gpu_compute_capability()
    if capability is not None:
        return (
            "mixed_bfloat16"
            if capability >= (8, 0)
            else "mixed_float16"
            if capability >= (7, 0)
            else "float32"
        )
    if cpu_bf16_flags() and backbone in BF16_ON_CPU:
        return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def dtype_policy(policy: str):
    """Build models under ``policy``, restoring the previous global policy afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)
