"""What a run's ``config.json`` records: its arguments, resolved settings, data, backbone and versions.

``Run`` alone knows where the file goes; this is what goes into it, written once when the
run starts (a resumed run keeps its ``created``), like nanoGPT's config in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import platform

import keras
import numpy as np

import kerasimg
from kerasimg.data import LabelledData
from kerasimg.models import count_flops
from kerasimg.models.registry import BackboneSpec
from kerasimg.training.config import ResolvedFit
from kerasimg.training.run import CONFIG_FORMAT


def package_versions() -> dict[str, str]:
    import tensorflow as tf

    return {
        "kerasimg": kerasimg.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        **({"jax": __import__("jax").__version__} if keras.backend.backend() == "jax" else {}),
        "python": platform.python_version(),
    }


def run_record(
    resolved: ResolvedFit,
    data: LabelledData,
    model: keras.Model,
    spec: BackboneSpec,
    *,
    out: str,
    replicas: int,
    processes: int,
    global_batch_size: int,
    created: str,
) -> dict:
    """``config.json``'s contents for a run of ``model`` on ``data`` as ``resolved`` says."""
    return {
        "format": CONFIG_FORMAT,
        "arguments": dataclasses.asdict(resolved.arguments),
        "resolved": {
            **resolved.to_json(),
            "replicas": replicas,
            "processes": processes,
            "global_batch_size": global_batch_size,
            "backend": keras.backend.backend(),
            "out": out,
        },
        "class_names": data.class_names,
        "data_summary": data.summary(),
        "backbone_spec": {
            "preprocessing": spec.preprocessing,
            "stages": spec.stage_names,
            "default_image_size": spec.image_size,
            "feature_dim": spec.feature_dim,
        },
        "parameters": {"total": int(model.count_params())},
        # A TensorFlow-graph count: not under the JAX backend (multihost).
        "flops_per_image": count_flops(model) if keras.backend.backend() == "tensorflow" else None,
        "versions": package_versions(),
        "created": created,
    }
