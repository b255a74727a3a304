"""What training needs for multi-label data (``--task multilabel``): its loss and its Keras metrics.

Every output is a sigmoid probability of its own class, the loss is binary cross-entropy over the
classes, and the metric named ``accuracy`` is exact-match (subset) accuracy at 0.5, the definition
scikit-learn's ``accuracy_score`` uses for multi-label data: the fraction of images whose every
class is right. It keeps the name so that checkpoints, early stopping, curves and ``compare`` select
and show runs of either task the same way. ``map`` is Keras's area under the precision-recall curve,
averaged over the classes: the per-epoch view of the mean average precision the evaluation reports.
"""

from __future__ import annotations

import keras
from keras import ops

ACTIVATIONS = {False: "softmax", True: "sigmoid"}  # the output layer's, by multilabel


@keras.saving.register_keras_serializable(package="kerasimg")
def exact_match(y_true, y_pred):
    """1 for an image whose every class is predicted right at 0.5, else 0."""
    right = ops.equal(ops.cast(y_pred >= 0.5, "float32"), ops.cast(y_true >= 0.5, "float32"))
    return ops.cast(ops.all(right, axis=-1), "float32")


def multilabel_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)


def multilabel_metrics(num_classes: int) -> list:
    return [
        keras.metrics.MeanMetricWrapper(exact_match, name="accuracy"),
        keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes, name="map"),
    ]
