"""Port torchvision/timm ResNet-family checkpoints into the Keras ResNeXt.

Reads ``.safetensors`` with the ``safetensors`` package (no PyTorch needed) and
``.pth``/``.pt``/``.bin`` with PyTorch when it is installed. Every tensor is
mapped by name: convolution kernels from ``[out, in/groups, kh, kw]`` to Keras's
``[kh, kw, in/groups, out]``, BatchNorm weight/bias/running statistics to
gamma/beta/moving mean/variance, ``fc`` to a ``Dense`` layer when the model has
one (dropped otherwise). A tensor left unmatched or a shape that differs is an
error that names it.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from kerasimg.errors import UserError

TORCH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_BLOCK = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)$")


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Name -> float32 array, from a safetensors file or a PyTorch pickle."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return {k: v.astype(np.float32) for k, v in load_file(path).items()}
    try:
        import torch
    except ImportError:
        raise UserError(
            f"Reading {path} needs PyTorch (pip install torch), or save the checkpoint as "
            ".safetensors, which kerasimg reads without it."
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v.detach().float().numpy() for k, v in state.items()}


def torch_prefix(layer_name: str) -> str | None:
    """The torchvision parameter prefix of a Keras ResNeXt layer, or None for weightless layers."""
    if layer_name == "stem_conv":
        return "conv1"
    if layer_name == "stem_bn":
        return "bn1"
    if layer_name == "fc":
        return "fc"
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    stage, block, index, kind = match.groups()
    base = f"layer{int(stage) - 1}.{int(block) - 1}"
    if index == "0":
        return f"{base}.downsample.{0 if kind == 'conv' else 1}"
    return f"{base}.{kind}{index}"


def _expected(layer: keras.Layer, prefix: str) -> list[tuple[str, callable]]:
    """``(torch name, to_keras)`` for each of ``layer.weights``, in order."""
    if isinstance(layer, keras.layers.BatchNormalization):
        names = ("weight", "bias", "running_mean", "running_var")
        return [(f"{prefix}.{n}", lambda a: a) for n in names]
    if isinstance(layer, keras.layers.Dense):
        return [(f"{prefix}.weight", lambda a: a.T), (f"{prefix}.bias", lambda a: a)]
    conv = [(f"{prefix}.weight", lambda a: a.transpose(2, 3, 1, 0))]
    return conv + ([(f"{prefix}.bias", lambda a: a)] if len(layer.weights) > 1 else [])


def load_torch_checkpoint(model: keras.Model, path: str | Path) -> None:
    """Set every weight of ``model`` from the torchvision-named checkpoint at ``path``."""
    state = read_state_dict(path)
    missing: list[str] = []
    problems: list[str] = []
    used: set[str] = set()
    assignments = []
    for layer in model.layers:
        prefix = torch_prefix(layer.name)
        if prefix is None or not layer.weights:
            continue
        values = []
        for (key, to_keras), variable in zip(_expected(layer, prefix), layer.weights):
            if key not in state:
                missing.append(f"{key} missing (for Keras layer {layer.name})")
                continue
            value = to_keras(state[key])
            used.add(key)
            if tuple(value.shape) != tuple(variable.shape):
                problems.append(
                    f"{key} has shape {tuple(value.shape)}, {layer.name} needs {tuple(variable.shape)}"
                )
            values.append(value)
        assignments.append((layer, values))
    has_fc = any(layer.name == "fc" for layer in model.layers)
    unmatched = sorted(
        k
        for k in state
        if k not in used and not k.endswith("num_batches_tracked") and (has_fc or not k.startswith("fc."))
    )
    # Shape mismatches and strays first: they tell a wrong architecture from a partial file.
    problems += [f"{key} matches no Keras layer" for key in unmatched] + missing
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise UserError(f"The checkpoint {path} does not fit {model.name}: {shown}.")
    for layer, values in assignments:
        layer.set_weights(values)
