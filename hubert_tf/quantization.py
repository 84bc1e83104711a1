"""Quantised CPU inference: int8 matrix products, float32 activations, the call of `inference_function`.

    fn = quantized_inference_function(model)       # converts once (about a minute for the base model)
    logits = fn(audio)["logits"]                   # float32, like inference_function(model)(audio)
    fn(audio_batch, attention_mask)                # padded batches: each row as it runs alone

The one method is TFLite dynamic-range quantisation run by TFLite's XNNPack delegate: every weight of
the matmuls (q/k/v/out projections, feed-forward, feature projection, the head) and of the convolutions
(the conv feature encoder's window matmuls, the positional conv) is stored as int8 with one scale per
output channel; at run time XNNPack quantises each activation row to int8 ("qd8": dynamic, per row) and
runs integer GEMMs (`xnn_qd8_f32_qc8w_gemm*`: AVX512-VNNI kernels on AVX-512 CPUs, AVX2 / AVX-VNNI ones
elsewhere), with float32 attention scores, softmax, norms and GELU.

Ruled out by measurement: TensorFlow's own quantised matmul (`tf.raw_ops.QuantizedMatMul`: CPU kernels
for quint8 x quint8 only, one range per tensor, a quantise / dequantise round trip around every product)
is several times slower than TensorFlow's float32 matmul on the feed-forward shapes; int8 weights
dequantised on the fly save memory, not time; float32 TFLite with XNNPack is no faster than the
TensorFlow graph, so the gain is the int8 GEMMs, not the runtime.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import tensorflow as tf

from .modeling.inference import cached
from .modeling.masking import conv_output_lengths

METHODS = ("auto", "tflite")
# What method="auto" picks: the only method (see the module docstring for the ones ruled out).
AUTO_METHOD = "tflite"


def default_threads() -> int:
    """CPU threads for the interpreter: TensorFlow's intra-op setting when set (`hubert_tf.benchmark
    --threads`), else every core this process may run on."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured > 0:
        return configured
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _TFLiteRunner:
    """One TFLite interpreter, resized only when the input shape changes.

    One interpreter, not one per shape: XNNPack packs the weights per interpreter (hundreds of MB of
    resident memory each for the base model), while resizing it to a new shape (`resize_tensor_input` +
    `allocate_tensors`: XNNPack reshapes its runtime in place) costs a tiny fraction of a run.
    A lock serialises calls: an interpreter must not run two invocations at once.
    """

    def __init__(self, flatbuffer: bytes, num_threads: int):
        from .export import tflite_interpreter

        self.interpreter = tflite_interpreter(model_content=flatbuffer, num_threads=num_threads)
        self.min_samples = self.interpreter.min_samples
        (self._input,) = [d["index"] for d in self.interpreter.get_input_details()]
        (self._output,) = [d["index"] for d in self.interpreter.get_output_details()]
        (self.output_name,) = self.interpreter.get_signature_list()["serving_default"]["outputs"]
        self._shape = None
        self._lock = threading.Lock()
        self.allocations = 0

    def __call__(self, values: np.ndarray) -> np.ndarray:
        from .export import _check_tflite_audio

        # Before resizing: a too short input fails the interpreter's allocation with a C++ message.
        _check_tflite_audio(values, self.min_samples)
        with self._lock:
            if values.shape != self._shape:
                self.interpreter.resize_tensor_input(self._input, values.shape)
                self.interpreter.allocate_tensors()
                self.allocations += 1
                self._shape = values.shape
            self.interpreter.set_tensor(self._input, values)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output)  # a copy, safe after the lock is released


class QuantizedInferenceFunction:
    """`fn(input_values, attention_mask=None)` -> the model's main output as a dict of one float32 tensor.

    Attributes:
        method: the method used ("tflite").
        num_threads: the interpreter's CPU threads.
        output_name: "logits" (models with a head) or "last_hidden_state" (the bare model).
        tracing_count: graphs traced (1: the conversion; calls trace nothing).
        allocations: interpreter (re)allocations so far, one per change of input shape.
    """

    def __init__(self, model, method: str, num_threads: int):
        from .export import tflite_flatbuffer

        self.model = model
        self.method = method
        self.num_threads = num_threads
        self._runner = _TFLiteRunner(tflite_flatbuffer(model, quantize="dynamic"), num_threads)
        self.output_name = self._runner.output_name
        self.tracing_count = 1

    @property
    def allocations(self) -> int:
        return self._runner.allocations

    def __call__(self, input_values, attention_mask=None) -> dict[str, Any]:
        """input_values: float [batch, samples]; attention_mask: optional int [batch, samples], each row
        ones then zeros (right padding). A padded batch runs row by row on each row's valid samples
        (so each row's outputs are exactly its outputs alone, as `exact_padding=True`); frames past a
        row's valid ones are 0."""
        x = np.asarray(input_values.numpy() if isinstance(input_values, tf.Tensor) else input_values)
        if x.ndim != 2:
            raise ValueError(f"input_values must have shape [batch, samples], got {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"input_values must be float audio, got dtype {x.dtype}")
        if x.shape[0] == 0:
            raise ValueError(f"input_values has an empty batch: shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        lengths = None if attention_mask is None else self._lengths(attention_mask, x.shape)
        if lengths is None or (lengths == x.shape[1]).all():
            return {self.output_name: tf.convert_to_tensor(self._runner(x))}
        # Row by row: the model's masked graph does not convert to TFLite's built-in ops, and rows alone
        # skip the padding's compute (a padded batch then costs about the sum of its rows).
        rows = [self._runner(x[i:i + 1, :n]) for i, n in enumerate(lengths)]
        if rows[0].ndim == 2:  # one vector per row (classification logits)
            return {self.output_name: tf.convert_to_tensor(np.concatenate(rows))}
        config = self.model.config
        frames = int(conv_output_lengths(x.shape[1], config.conv_kernel, config.conv_stride))
        out = np.zeros((len(rows), frames) + rows[0].shape[2:], np.float32)
        for i, row in enumerate(rows):
            out[i, :row.shape[1]] = row[0]
        return {self.output_name: tf.convert_to_tensor(out)}

    def _lengths(self, attention_mask, shape) -> np.ndarray:
        """Valid samples per row of a right-padded 0/1 mask (anything else: a one-line error)."""
        mask = np.asarray(attention_mask.numpy() if isinstance(attention_mask, tf.Tensor) else attention_mask)
        if mask.shape != shape:
            raise ValueError(f"attention_mask has shape {mask.shape}, expected {shape}")
        if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
            raise TypeError(f"attention_mask must be an int or bool array of 0/1, got dtype {mask.dtype}")
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real sample)")
        mask = mask.astype(np.int32)
        lengths = mask.sum(axis=1)
        for i, n in enumerate(lengths):
            if mask[i, :n].min(initial=1) == 0:
                raise ValueError(f"attention_mask row {i} is not right-padded (its ones must come first)")
            if n < self._runner.min_samples:
                raise ValueError(f"attention_mask row {i} has {n} valid samples, fewer than the minimum of "
                                 f"{self._runner.min_samples} (the receptive field of the conv feature encoder)")
        return lengths

    def __repr__(self) -> str:
        return (f"QuantizedInferenceFunction({type(self.model).__name__}, method={self.method!r}, "
                f"num_threads={self.num_threads})")


def relative_rms_error(actual, expected, frame_lengths=None) -> float:
    """sqrt(mean((actual - expected)^2) / mean(expected^2)): the error measure of quantised outputs.

    Args:
        actual, expected: arrays of one shape ([batch, frames, ...] with `frame_lengths`).
        frame_lengths: optional [batch] valid frames per row: only those enter the means.

    Example:

    >>> round(relative_rms_error(np.array([1.1, 2.0]), np.array([1.0, 2.0])), 4)
    0.0447
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    if frame_lengths is not None:
        valid = np.arange(expected.shape[1])[None, :] < np.asarray(frame_lengths)[:, None]
        actual, expected = actual[valid], expected[valid]
    return float(np.sqrt(np.mean((actual - expected) ** 2) / np.mean(expected ** 2)))


def quantized_inference_function(model, *, method: str = "auto", num_threads: int | None = None
                                 ) -> QuantizedInferenceFunction:
    """The model's int8 CPU inference function, built once (a TFLite conversion) and cached on the model
    in `inference_function`'s cache.

    method="auto" picks "tflite", dynamic-range quantisation run by TFLite's XNNPack delegate: int8
    weights with per-channel scales for every matmul and conv, activations quantised per row at run
    time, integer GEMMs (AVX512-VNNI on AVX-512 CPUs, AVX2 kernels elsewhere); attention scores,
    softmax, norms and GELU stay float32. It is the fastest int8 path measured on CPU, faster than the
    float32 TensorFlow graph, at a relative RMS error of a few percent (`relative_rms_error`) on the
    outputs; the conversion takes a while for full-size models, once per model and process.

    Args:
        model: a float32 hubert_tf model (TFHubertModel, TFHubertForCTC, TFHubertForSequenceClassification).
        method: "auto" or "tflite". Defaults to "auto".
        num_threads: CPU threads. Defaults to `default_threads()` (TensorFlow's intra-op setting, else
            every available core).

    Returns:
        QuantizedInferenceFunction: `fn(input_values [batch, samples], attention_mask=None)` -> dict with
        "logits" (models with a head) or "last_hidden_state" (bare model), float32 tensors shaped as
        `inference_function(model)` gives them.

    Raises:
        ValueError: a bad `method` or `num_threads`, or a model that does not compute in float32.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> model = TFHubertModel(HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> fn = quantized_inference_function(model)
    >>> fn(np.zeros((2, 24000), "float32"))["last_hidden_state"].shape
    TensorShape([2, 74, 32])
    >>> fn is quantized_inference_function(model)
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if num_threads is None:
        num_threads = default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    if getattr(model, "compute_dtype", "float32") != "float32":
        raise ValueError(f"quantized inference needs a float32 model, got compute dtype {model.compute_dtype}")
    method = AUTO_METHOD if method == "auto" else method
    return cached(model, ("quantized", method, num_threads),
                  lambda: QuantizedInferenceFunction(model, method, num_threads))
