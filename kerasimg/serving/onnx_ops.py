"""tf2onnx conversions for TensorFlow ops it has none for, registered when ONNX export runs.

``Erfc``: TensorFlow writes the exact GELU (ViT, DeiT, ConvNeXt, DINOv2) as
``0.5 * x * erfc(-x / sqrt(2))``. tf2onnx has no handler for ``Erfc`` and leaves the
node as it is, which onnxruntime refuses to load ("No Op registered for Erfc"). ONNX
has ``Erf`` since opset 9, and ``erfc(x) = 1 - erf(x)``; in GELU the difference from
the exact complement is far below the export's 1e-4 check (it only matters where
``erfc`` is tiny, and there it is multiplied by a bounded ``x``).
"""

from __future__ import annotations

import functools


@functools.cache
def register() -> None:
    """Add the handlers to tf2onnx's registry (once per process)."""
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            node.type = "Sub"
            ctx.replace_inputs(node, [one.output[0], erf.output[0]])

    return None
