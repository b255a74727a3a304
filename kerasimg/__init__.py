"""kerasimg: transfer-learning image classification with Keras 3 and TensorFlow.

The flow is data -> model -> training -> export:
``kerasimg.data`` turns a folder, the Intel layout, a TFDS name or the built-in
``scenes`` demo set into ``tf.data`` pipelines; ``kerasimg.models`` holds the
registry of backbones and the classifier head; ``kerasimg.training`` runs a fit
and writes its report. The ``python -m kerasimg.*`` modules are thin CLIs.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries the
# messages users need; keep warnings and errors. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
