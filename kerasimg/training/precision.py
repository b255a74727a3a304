"""``--precision float32 | mixed_bfloat16 | auto``: Keras dtype policies, chosen by hardware.

Under ``mixed_bfloat16`` layers compute in bfloat16 and keep float32 variables; the
classifier's output layer stays float32 (``build_classifier`` sets it), as the Keras
mixed-precision guide asks. bfloat16 has float32's exponent range, so no loss
scaling is needed (``LossScaleOptimizer`` is for float16). ``auto`` picks bfloat16
where the hardware computes it natively: CPUs with AMX-BF16 or AVX512-BF16 (oneDNN
then runs AMX/BF16 kernels) and NVIDIA GPUs of compute capability 8.0 or newer, and
on a CPU only for backbones where it was measured faster (``BF16_ON_CPU``).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import keras

from kerasimg.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "auto")
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
def cpu_bf16_flags() -> frozenset[str]:
    """The CPU's bfloat16 feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return frozenset(flags & {"amx_bf16", "avx512_bf16"})


@functools.cache
def gpus_support_bf16() -> bool | None:
    """True when every visible GPU is compute capability >= 8.0, None when there is no GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capabilities = [
        tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus
    ]
    return all(tuple(c) >= (8, 0) for c in capabilities)


def resolve_precision(precision: str, backbone: str | None = None) -> str:
    """The Keras dtype policy name for ``--precision``; ``auto`` decided by hardware and backbone."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    gpu = gpus_support_bf16()
    if gpu is not None:
        return "mixed_bfloat16" if gpu else "float32"
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
