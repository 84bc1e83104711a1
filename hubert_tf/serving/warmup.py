"""TF Serving warm-up records: `assets.extra/tf_serving_warmup_requests` in a SavedModel.

TF Serving replays these `PredictionLog` records (a TFRecord file, at most 1000 records) when it loads a
version, before marking it available, so the first real requests do not pay the graph initialisation.
The protos come from `tensorflow-serving-api` (the optional extra `hubert_tf[serving]`).
"""

from __future__ import annotations

import os

import numpy as np

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_SECONDS = (1.0, 10.0)  # request lengths replayed for every signature (batch 1)
SAMPLING_RATE = 16000


def _serving_apis():
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        raise ImportError('warm-up records need the TF Serving protos: pip install "hubert_tf[serving]" '
                          "(tensorflow-serving-api)") from None
    return model_pb2, predict_pb2, prediction_log_pb2


def _example_inputs(signature, samples: int, rng) -> dict[str, np.ndarray]:
    """Inputs for one request of `signature` (a tf.function with an input_signature), batch 1."""
    audio = (0.1 * rng.standard_normal((1, samples))).astype(np.float32)
    values = {"audio": audio, "input_values": audio, "attention_mask": np.ones((1, samples), np.int32),
              "audio_lengths": np.array([samples], np.int32)}
    return {spec.name: values[spec.name] for spec in signature.input_signature}


def warmup_requests(signatures: dict, min_samples: int, model_name: str | None = None,
                    seconds=WARMUP_SECONDS) -> list[bytes]:
    """Serialized `PredictionLog` records: every signature at every length of `seconds`.

    Args:
        signatures: {endpoint name: tf.function} as exported ("serve" is requested as "serving_default").
        min_samples: the model's receptive field (no request is shorter).
        model_name: written into each request's `model_spec.name` (TF Serving does not check it).
        seconds: request lengths.

    Returns:
        list of serialized records.
    """
    import tensorflow as tf

    model_pb2, predict_pb2, prediction_log_pb2 = _serving_apis()
    rng = np.random.default_rng(0)
    records = []
    for name, function in signatures.items():
        signature_name = "serving_default" if name == "serve" else name
        for length in seconds:
            samples = max(int(length * SAMPLING_RATE), min_samples)
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name or "", signature_name=signature_name))
            for key, value in _example_inputs(function, samples, rng).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            records.append(log.SerializeToString())
    if len(records) > 1000:
        raise ValueError(f"{len(records)} warm-up records; TF Serving reads at most 1000")
    return records


def write_warmup_file(saved_model_dir: str, records: list[bytes]) -> str:
    """Writes `records` to `<saved_model_dir>/assets.extra/tf_serving_warmup_requests`; returns the path."""
    import tensorflow as tf

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def read_warmup_file(path: str) -> list:
    """The `PredictionLog` protos of a warm-up file (for checks and tests)."""
    import tensorflow as tf

    _, _, prediction_log_pb2 = _serving_apis()
    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
