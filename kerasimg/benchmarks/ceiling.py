"""The machine's compute ceiling: GFLOP/s of a large matrix product through TensorFlow.

A model's images/s says little until it is set against what the machine can do. A large
square matmul is the best case oneDNN reaches on this CPU (its convolutions run the same
GEMM micro-kernels), so the fraction of it a model achieves says how far from the limit
a step is. Measured in the same process and precision as the model it is compared with,
and in turn with the model's steps, since a shared machine's speed moves from minute to
minute. A ceiling is the best the machine does, so the fastest product counts: a load
spike during one 0.1 s product would otherwise lower it below what the model then reaches.
"""

from __future__ import annotations

import functools
import time

# 2048^3 multiply-adds: ~17 GFLOP, long enough to amortise the call, short enough for a test.
MATMUL_SIZE = 2048
PRODUCTS_PER_ROUND = 3


class MatmulCeiling:
    """Rounds of a ``size``-square matmul in ``compute_dtype`` (float32 or bfloat16), keeping the best."""

    def __init__(self, compute_dtype: str, size: int = MATMUL_SIZE):
        import tensorflow as tf

        a = tf.random.stateless_uniform((size, size), seed=(1, 2), dtype=tf.float32)
        b = tf.random.stateless_uniform((size, size), seed=(3, 4), dtype=tf.float32)
        a, b = tf.cast(a, compute_dtype), tf.cast(b, compute_dtype)
        self._product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
        self._product()  # trace and let oneDNN pick its kernel
        self.flops = 2 * size**3  # a multiply-add counts 2, as count_flops counts it
        self.best_seconds = float("inf")

    def run(self, products: int = PRODUCTS_PER_ROUND) -> None:
        """One round: ``products`` timed matmuls."""
        for _ in range(products):
            start = time.perf_counter()
            self._product().numpy()
            self.best_seconds = min(self.best_seconds, time.perf_counter() - start)

    @property
    def gflop_per_sec(self) -> float:
        return self.flops / self.best_seconds / 1e9


@functools.cache
def matmul_ceiling(compute_dtype: str, rounds: int = 2) -> float:
    """The ceiling in ``compute_dtype`` measured once per process, for rows timed on their own (serve)."""
    ceiling = MatmulCeiling(compute_dtype)
    for _ in range(rounds):
        ceiling.run()
    return ceiling.gflop_per_sec
