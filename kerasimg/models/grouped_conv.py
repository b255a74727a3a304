"""A grouped 2-D convolution that is fast on CPU, for ResNeXt.

``keras.layers.Conv2D(groups=g)`` computes the right function, but Keras 3's
TensorFlow backend sends every grouped convolution through an op-level
``jit_compile=True`` function, which on a CPU makes a ResNeXt-50 train step tens of
times slower than ResNet-50's. TensorFlow's own ``tf.nn.conv2d`` accepts a kernel
whose input-channel axis is ``in_channels / groups`` and runs a native grouped
convolution with gradients. This layer uses it on the TensorFlow backend and
``keras.ops.conv`` elsewhere; its kernel has exactly ``Conv2D(groups=g)``'s shape,
so weights move between the two unchanged.

``python -m kerasimg.models.grouped_conv`` times the formulations considered.
"""

from __future__ import annotations

import keras
from keras import ops


def native_grouped_gradients() -> bool:
    """Whether TensorFlow differentiates a grouped ``tf.nn.conv2d`` on this machine.

    Its oneDNN kernels do on CPUs with AVX-512; on others (AVX2 only, seen here) the gradient
    op refuses: "Gradients for grouped convolutions are not supported on CPU".
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return "avx512f" in f.read()
    except OSError:  # not Linux: one convolution per group, correct everywhere
        return False


@keras.saving.register_keras_serializable(package="kerasimg")
class GroupedConv2D(keras.layers.Layer):
    """``Conv2D(filters, kernel_size, strides, padding, groups)``, channels last, no dilation."""

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        padding: str = "valid",
        groups: int = 1,
        use_bias: bool = False,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if filters % groups:
            raise ValueError(
                f"filters must be divisible by groups. Received: filters={filters}, groups={groups}"
            )
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.groups = groups
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"Input channels must be divisible by groups. Received: channels={channels}, "
                f"groups={self.groups}"
            )
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k, k, channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def call(self, inputs):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            padding = self.padding.upper()
            if native_grouped_gradients():
                outputs = tf.nn.conv2d(inputs, self.kernel, strides=self.strides, padding=padding)
            else:  # one convolution per group: ordinary convolutions, differentiable on every CPU
                pairs = zip(
                    tf.split(inputs, self.groups, axis=-1), tf.split(self.kernel, self.groups, axis=-1)
                )
                outputs = tf.concat([tf.nn.conv2d(x, k, self.strides, padding) for x, k in pairs], axis=-1)
        else:
            outputs = ops.conv(inputs, self.kernel, strides=self.strides, padding=self.padding)
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def size(n):
            if n is None:
                return None
            if self.padding == "same":
                return -(-n // self.strides)
            return (n - self.kernel_size) // self.strides + 1

        return (batch, size(height), size(width), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "groups": self.groups,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


def _time_formulations(batch: int = 8, size: int = 56, channels: int = 128, groups: int = 32, steps: int = 5):
    """Median forward+backward milliseconds of one grouped 3x3 layer, per formulation."""
    import statistics
    import time

    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, size, size, channels)).astype("float32"))
    kernel = tf.Variable(rng.normal(size=(3, 3, channels // groups, channels)).astype("float32"))
    dense_kernel = tf.Variable(rng.normal(size=(3, 3, channels, channels)).astype("float32"))
    keras_grouped = keras.layers.Conv2D(channels, 3, padding="same", groups=groups, use_bias=False)
    keras_grouped.build(x.shape)
    per_group = channels // groups
    mask = np.zeros((1, 1, channels, channels), "float32")
    for g in range(groups):
        mask[..., g * per_group : (g + 1) * per_group, g * per_group : (g + 1) * per_group] = 1

    formulations = {
        "keras Conv2D(groups)": (lambda: keras_grouped(x), keras_grouped.trainable_variables),
        "tf.nn.conv2d grouped kernel": (lambda: tf.nn.conv2d(x, kernel, 1, "SAME"), [kernel]),
        "split + conv + concat": (
            lambda: tf.concat(
                [
                    tf.nn.conv2d(xs, ks, 1, "SAME")
                    for xs, ks in zip(tf.split(x, groups, axis=-1), tf.split(kernel, groups, axis=-1))
                ],
                axis=-1,
            ),
            [kernel],
        ),
        "dense conv, block-diagonal mask": (
            lambda: tf.nn.conv2d(x, dense_kernel * mask, 1, "SAME"),
            [dense_kernel],
        ),
        "dense conv (reference, not grouped)": (
            lambda: tf.nn.conv2d(x, dense_kernel, 1, "SAME"),
            [dense_kernel],
        ),
    }
    results = {}
    for name, (forward, variables) in formulations.items():

        @tf.function
        def step(forward=forward, variables=variables):
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(forward())
            return tape.gradient(y, variables)

        step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        results[name] = statistics.median(times) * 1000
    return results


if __name__ == "__main__":
    for name, ms in _time_formulations().items():
        print(f"{name:<38} {ms:9.1f} ms forward+backward (56x56x128, groups=32, batch 8)")
