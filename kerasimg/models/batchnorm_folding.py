"""Frozen BatchNorm folded into the convolution before it, for computing only.

BatchNorm in inference mode (a frozen backbone, or fine-tuning with BN frozen, the
default) is a per-channel affine map, so ``conv -> BN`` equals one convolution with a
scaled kernel plus a bias: ``W' = W * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``.
That drops BN's element-wise passes over every activation (forward and backward) and its
float32 island under ``mixed_bfloat16``, and lets oneDNN fuse conv + bias (+ ReLU).

The saved model must keep Keras's standard layers and weights, so nothing is rewritten:
``fold_frozen_batchnorm`` builds a *compute model* that walks the classifier's functional
graph and calls the very same layer objects, except that each foldable conv -> BN pair
becomes one ``FoldedConvBatchNorm`` holding the original ``Conv2D`` and
``BatchNormalization``. The folded kernel is computed from their variables on every call,
so training the compute model trains the original variables, and checkpoints, ``model.keras``
and exports are written from the original model unchanged. A BN that would use batch
statistics (trainable, called with ``training=True``) runs unfolded, through TensorFlow's
fused kernel when ``fuse`` is on (``fused_batchnorm.py``), which computes what Keras's does.
"""

from __future__ import annotations

from collections import Counter

import keras
import tensorflow as tf
from keras.src.backend import AutocastScope

from kerasimg.models.fused_batchnorm import FusedTrainingBatchNorm, fused_training_batch_norm, fuses

FOLDABLE_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class FoldedConvBatchNorm(keras.layers.Layer):
    """``bn(conv(x))`` as one convolution whenever ``bn`` runs in inference mode.

    Holds references to the original layers (their variables are shared, never copied).
    The fold reads the variables in float32 and rounds the folded kernel to the compute
    dtype once, as BatchNorm itself computes in float32.
    """

    def __init__(
        self, conv: keras.layers.Layer, bn: keras.layers.BatchNormalization, fuse: bool = False, **kwargs
    ):
        super().__init__(name=f"{conv.name}_folded", dtype=conv.dtype_policy, **kwargs)
        self.conv = conv
        self.bn = bn
        self.fuse = fuse

    def call(self, inputs, training=None):
        if training and self.bn.trainable:  # BN would use batch statistics: nothing to fold
            outputs = self.conv(inputs)
            if self.fuse and fuses(self.bn, outputs):
                return fused_training_batch_norm(self.bn, outputs)
            return self.bn(outputs, training=training)
        kernel, bias = self.folded_kernel_and_bias()
        outputs = self._convolve(inputs, keras.ops.cast(kernel, inputs.dtype))
        return tf.nn.bias_add(outputs, keras.ops.cast(bias, inputs.dtype))

    def folded_kernel_and_bias(self):
        """The float32 kernel and bias of the one convolution equal to conv -> frozen BN."""
        # A mixed policy reads variables in bfloat16 (Keras's autocast scope); the fold must
        # read them as stored. Keras has no public switch for this; its layers use this scope.
        with AutocastScope(None):
            return self._fold()

    def _fold(self):
        bn = self.bn
        scale = keras.ops.rsqrt(keras.ops.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        if bn.scale:
            scale = scale * bn.gamma
        shift = -keras.ops.convert_to_tensor(bn.moving_mean)
        if self.conv.use_bias:
            shift = shift + self.conv.bias
        bias = shift * scale
        if bn.center:
            bias = bias + bn.beta
        kernel = keras.ops.convert_to_tensor(self.conv.kernel)
        # Conv2D kernels end in output channels; a depthwise kernel's output channel is
        # (input channel, multiplier), its last two axes.
        scale = keras.ops.reshape(scale, kernel.shape[-2:]) if self._depthwise else scale
        return kernel * scale, bias

    @property
    def _depthwise(self) -> bool:
        return isinstance(self.conv, keras.layers.DepthwiseConv2D)

    def _convolve(self, inputs, kernel):
        conv = self.conv
        if self._depthwise and inputs.dtype == tf.bfloat16 and tuple(conv.dilation_rate) == (1, 1):
            return depthwise_conv_float32_filter_gradient(inputs, kernel, conv.strides, conv.padding)
        if self._depthwise:
            return keras.ops.depthwise_conv(
                inputs,
                kernel,
                strides=conv.strides,
                padding=conv.padding,
                dilation_rate=conv.dilation_rate,
                data_format=conv.data_format,
            )
        return conv.convolution_op(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


def depthwise_conv_float32_filter_gradient(inputs, kernel, strides, padding: str):
    """A bfloat16 depthwise convolution whose kernel gradient is computed in float32.

    oneDNN has depthwise kernels for bfloat16 forward and input-gradient passes
    (``brdgmm_dw``/``jit_dw:avx512_core_bf16``), but its bfloat16 *weight* gradient falls to
    a generic grouped kernel (``jit_bf16``): measured here 262 ms against 80 ms in float32
    for one EfficientNet-B0 layer (32x28x28x240, 5x5), which is why EfficientNet trained
    at 0.65x under ``mixed_bfloat16``. Casting the activations and their gradient to float32
    for that one product costs far less than it saves.
    """
    strides = [1, *strides, 1]
    padding = padding.upper()

    @tf.custom_gradient
    def convolve(x, k):
        y = tf.nn.depthwise_conv2d(x, k, strides, padding)

        def gradient(dy):
            dx = tf.compat.v1.nn.depthwise_conv2d_native_backprop_input(tf.shape(x), k, dy, strides, padding)
            dk = tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(
                tf.cast(x, tf.float32), tf.shape(k), tf.cast(dy, tf.float32), strides, padding
            )
            return dx, tf.cast(dk, k.dtype)

        return y, gradient

    return convolve(inputs, kernel)


def fold_frozen_batchnorm(model: keras.Model) -> keras.Model:
    """A model computing the same function as ``model`` with conv -> frozen BN pairs folded."""
    return batchnorm_compute_model(model, fold=True, fuse=False)


def batchnorm_compute_model(model: keras.Model, fold: bool = True, fuse: bool = True) -> keras.Model:
    """A model computing the same function as ``model``, its BatchNorm computed faster.

    ``fold``: conv -> BN pairs become one convolution while the BN is frozen. ``fuse``: a BN
    that uses batch statistics runs TensorFlow's fused kernel (``fused_batchnorm.py``).
    It shares every layer and variable with ``model`` (train it, save ``model``). Nested
    functional models (the classifier's backbone) are rewritten too. Only pairs where the
    conv's output feeds the BN alone, the conv has no activation and the BN normalises
    the last axis without renorm are folded; everything else is called as it is.
    Returns ``model`` itself when there is nothing to change.
    """
    fold_pair = (lambda conv, bn: FoldedConvBatchNorm(conv, bn, fuse=fuse)) if fold else None

    def fuse_layer(layer):
        if fuse and isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            return FusedTrainingBatchNorm(layer)
        return None

    return _rewritten(model, fold_pair, fuse_layer, FoldedComputeModel)


def _rewritten(model: keras.Model, fold_pair, replace_layer, build) -> keras.Model:
    """``model``'s functional graph with its layers substituted, ``model`` itself when none is.

    Each foldable (conv, bn) pair becomes ``fold_pair(conv, bn)`` (unless ``fold_pair`` is None),
    any other layer ``replace_layer(layer)`` where that is not None, and nested functional models
    (the classifier's backbone) are rewritten the same way. ``build(model, inputs, outputs)``
    makes each rewritten model.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        return model  # a subclassed model has no graph to walk: compute it as it is
    replacements = {}
    if fold_pair is not None:
        for conv, bn in foldable_pairs(model):
            replacements[id(conv)] = fold_pair(conv, bn)
            replacements[id(bn)] = _passthrough
    for layer in model.layers:
        if id(layer) in replacements:
            continue
        if isinstance(layer, keras.Model):
            rewritten = _rewritten(layer, fold_pair, replace_layer, build)
        else:
            rewritten = replace_layer(layer)
        if rewritten is not None and rewritten is not layer:
            replacements[id(layer)] = rewritten
    if not replacements:
        return model
    inputs = [keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name) for x in model.inputs]
    # Keras's own graph runner (what Functional.call uses), with the substitutes called instead.
    outputs = model._run_through_graph(inputs, operation_fn=lambda op: replacements.get(id(op), op))
    return build(model, inputs if len(inputs) > 1 else inputs[0], outputs)


class FoldedComputeModel(keras.Model):
    """The folded graph; ``save`` writes the original model, so ``ModelCheckpoint`` keeps its format.

    Weights-only saving (``BackupAndRestore``) stays this model's own: it is rebuilt the same
    way on resuming, and its optimizer's state belongs to it.
    """

    def __init__(self, original: keras.Model, inputs, outputs, **kwargs):
        super().__init__(inputs, outputs, **{"name": original.name, **kwargs})
        self._original = lambda: original  # a function, so Keras does not track it as a sublayer

    @property
    def original(self) -> keras.Model:
        return self._original()

    def save(self, filepath, *args, **kwargs):
        return self.original.save(filepath, *args, **kwargs)


def foldable_pairs(model: keras.Model) -> list[tuple[keras.layers.Layer, keras.layers.BatchNormalization]]:
    """(conv, bn) pairs of ``model``'s own graph where the conv's output is used by the BN alone."""
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    uses = Counter(id(t) for node in nodes for t in node.input_tensors)
    pairs = []
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, keras.layers.BatchNormalization) or len(node.input_tensors) != 1:
            continue
        (x,) = node.input_tensors
        conv = x._keras_history.operation
        if (
            isinstance(conv, FOLDABLE_CONVOLUTIONS)
            and len(conv._inbound_nodes) == 1
            and uses[id(x)] == 1
            and conv.activation in (None, keras.activations.linear)
            and conv.data_format == "channels_last"
            and bn.axis in (-1, len(x.shape) - 1)
            and not bn.renorm
            and len(bn._inbound_nodes) == 1
        ):
            pairs.append((conv, bn))
    return pairs


def _passthrough(inputs, **kwargs):
    """Stands in for a BN whose work moved into the convolution before it."""
    return inputs


def folded_for_inference(model: keras.Model) -> keras.Model:
    """``model`` for inference only, each foldable conv -> BN pair one convolution with fixed weights.

    Unlike the compute model, the folded kernel and bias are computed once and held by a
    plain ``Conv2D``/``DepthwiseConv2D`` (with a bias), so an exported graph carries them
    as constants and every runtime (TF Serving, ONNX, LiteRT) sees standard layers. The
    other layers are shared with ``model``; training or saving the copy is not meant.
    """
    return _rewritten(model, _folded_convolution, lambda layer: None, _plain_model)


def _plain_model(original: keras.Model, inputs, outputs) -> keras.Model:
    return keras.Model(inputs, outputs, name=original.name)


def _folded_convolution(conv: keras.layers.Layer, bn: keras.layers.BatchNormalization) -> keras.layers.Layer:
    kernel, bias = FoldedConvBatchNorm(conv, bn).folded_kernel_and_bias()
    config = {**conv.get_config(), "use_bias": True, "name": f"{conv.name}_folded"}
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
        config.pop(key, None)
    folded = type(conv).from_config(config)
    folded.build(conv.input.shape)
    folded.set_weights([keras.ops.convert_to_numpy(kernel), keras.ops.convert_to_numpy(bias)])
    return folded
