"""The machine's compute ceiling: GFLOP/s of one large matrix product through TensorFlow.

A model's images/s says little until it is set against what the machine can do. A large
square matmul is the best case oneDNN reaches on this CPU (its convolutions run the same
GEMM micro-kernels), so the fraction of it a model achieves says how far from the limit
a step is. Measured in the same process and precision as the model it is compared with,
since a shared machine's speed moves between runs.
"""

from __future__ import annotations

import functools
import statistics
import time

# 2048^3 multiply-adds: ~17 GFLOP, long enough to amortise the call, short enough for a test.
MATMUL_SIZE = 2048
MATMUL_REPEATS = 5


def matmul_flops(size: int = MATMUL_SIZE) -> int:
    """FLOPs of a ``size x size`` by ``size x size`` product (a multiply-add counts 2, as ``count_flops``)."""
    return 2 * size**3


def matmul_step(compute_dtype: str, size: int = MATMUL_SIZE):
    """A function running one ``size``-square matmul in ``compute_dtype`` (float32 or bfloat16), traced.

    ``bench`` times it in turn with the model steps, so the ceiling and the model see the same load.
    """
    import tensorflow as tf

    a = tf.random.stateless_uniform((size, size), seed=(1, 2), dtype=tf.float32)
    b = tf.random.stateless_uniform((size, size), seed=(3, 4), dtype=tf.float32)
    a, b = tf.cast(a, compute_dtype), tf.cast(b, compute_dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
    product()  # trace and let oneDNN pick its kernel
    return lambda: product().numpy()


@functools.cache
def matmul_ceiling(compute_dtype: str, size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS) -> float:
    """Median GFLOP/s of a ``size``-square matmul in ``compute_dtype``, measured once per process.

    For rows timed on their own (serving); ``measure_variants`` interleaves the matmul with its steps.
    """
    step = matmul_step(compute_dtype, size)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return matmul_flops(size) / statistics.median(times) / 1e9
