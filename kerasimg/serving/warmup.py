"""``assets.extra/tf_serving_warmup_requests``: PredictionLog records TF Serving replays on load."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from kerasimg.serving.signatures import BYTES_INPUT


def write_warmup_requests(path: str | Path, model_name: str, images: list[bytes]) -> Path:
    """One ``serving_default`` predict request per encoded image, as a TFRecord file."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            request.inputs[BYTES_INPUT].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str | Path) -> list:
    """The ``PredictionLog`` protos in a warm-up file (for checks and tests)."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
