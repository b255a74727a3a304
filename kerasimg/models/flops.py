"""FLOPs of a model's forward pass, as TensorFlow's profiler counts them.

A multiply-add counts as 2 FLOPs (so convolutions and matrix products give
2 x MACs) and element-wise operations (BatchNorm, activations, additions) count
one per element. Papers that quote "FLOPs" for EfficientNet (0.39 B for B0)
count multiply-adds once: divide by 2 to compare.
"""

from __future__ import annotations

import keras


def count_flops(model: keras.Model, batch_size: int = 1) -> int:
    """Forward-pass FLOPs of ``model`` for ``batch_size`` inputs at its input shape."""
    import tensorflow as tf

    shape = [batch_size, *model.inputs[0].shape[1:]]
    if any(d is None for d in shape):
        raise ValueError(f"count_flops needs a fully defined input shape. Received: {shape}")

    @tf.autograph.experimental.do_not_convert
    def forward(x):
        return model(x, training=False)

    graph = tf.function(forward).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    # The TF1 profiler warns that its own graph helpers are deprecated; nothing for users to act on.
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")
    try:
        return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)
    finally:
        logger.setLevel(level)
