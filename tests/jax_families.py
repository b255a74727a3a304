"""``KERAS_BACKEND=jax python jax_families.py``: one training step of each registry family under JAX.

Prints one JSON line per family, ``{family: "ok" | the error}``: one process for every
family, since each JAX process costs seconds to start; arguments pick families. Not in
the suite: XLA compiles DenseNet's and Inception-ResNet's train steps for minutes on 2
CPU cores. Every family passed with Keras 3.15.1 and JAX 0.10.2.
"""

from __future__ import annotations

import json
import sys

import keras
import numpy as np

from kerasimg.models import build_classifier, get_backbone, list_backbones

# The smallest input each family accepts (InceptionResNetV2 needs 75 px, ViT and DINOv2 their patch grid).
TINY_SIZE = {"inception_resnet": 75}

if __name__ == "__main__":
    first = {}
    wanted = sys.argv[1:]
    for name in list_backbones():
        first.setdefault(get_backbone(name).family, name)
    results = {}
    for family, name in first.items():
        if wanted and family not in wanted:
            continue
        try:
            keras.utils.set_random_seed(0)
            size = TINY_SIZE.get(family, 32)
            model = build_classifier(name, 3, image_size=size, weights="none")
            model.compile("adam", "sparse_categorical_crossentropy")
            images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
            loss = float(model.train_on_batch(images, np.array([0, 1])))
            results[family] = "ok" if np.isfinite(loss) else f"loss {loss}"
        except Exception as error:  # noqa: BLE001 - reported per family
            results[family] = f"{type(error).__name__}: {str(error)[:300]}"
        print(json.dumps({family: results[family]}), flush=True)
