"""The input unpacker shared by the main layer and every model, and the checks on inputs.

Inputs come as one tensor / numpy array, as a list or tuple in signature order, as a dict, or as
keyword arguments (the conventions of the old transformers TF models, which Keras' `fit()` relies on).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from ..errors import original_message
from ._tf_runtime import in_xla_context

MIN_SAMPLES_HINT = "audio shorter than the receptive field of the conv feature encoder"
NON_FINITE = "contains NaN or infinite value(s)"
FLOAT16_MAX = 65504.0

# Set while a converter (TFLite, tf2onnx) traces the model: in-graph input checks (assertions) are off,
# since TFLite's built-in op set has no Assert / CheckNumerics (the interpreter wrapper checks inputs in
# Python before invoke()), and layers use the op forms converters pattern-match (`in_converter_trace`).
_state = threading.local()


@contextlib.contextmanager
def tracing_for_converter():
    """Traces the model for a converter: no in-graph input assertions (converters cannot hold them),
    and the op forms converters recognise (e.g. the exact GELU as the one formula TFLite turns into its
    GELU op; see `in_converter_trace`)."""
    previous = getattr(_state, "converter", False)
    _state.converter = True
    try:
        yield
    finally:
        _state.converter = previous


def in_converter_trace() -> bool:
    """True inside `tracing_for_converter()`."""
    return getattr(_state, "converter", False)


def _graph_checks() -> bool:
    # XLA drops assertions (under jit_compile `fit()` checks labels outside the compiled step).
    return not tf.executing_eagerly() and not in_converter_trace() and not in_xla_context()


def unpack_inputs(first: Any, names: Sequence[str], given: dict[str, Any]) -> dict[str, Any]:
    """Merges `first` (tensor, list/tuple or dict) with keyword inputs `given` into one dict by name.

    Args:
        first: the first positional argument of `call`.
        names: the accepted input names, in signature order (the first one is the main input).
        given: the keyword inputs passed explicitly (None values are ignored).
    Raises:
        ValueError: naming an unknown key, an input given twice, or a missing main input.
    """
    out = {k: v for k, v in given.items() if v is not None}
    if isinstance(first, dict):
        unknown = [k for k in first if k not in names]
        if unknown:
            raise ValueError(f"unknown input name(s) {unknown}; accepted: {list(names)}")
        items = list(first.items())
    elif isinstance(first, (list, tuple)):
        if len(first) > len(names):
            raise ValueError(f"got {len(first)} inputs in a list, at most {len(names)} accepted: {list(names)}")
        items = list(zip(names, first))
    elif first is not None:
        items = [(names[0], first)]
    else:
        items = []
    for key, value in items:
        if value is None:
            continue
        if key in out:
            raise ValueError(f"input {key!r} was given twice")
        out[key] = value
    if names[0] not in out:
        raise ValueError(f"missing {names[0]!r}: pass it as a tensor, in a list or dict, or by keyword")
    return out


PCM_HINT = (
    "raw PCM samples; the model expects float audio normalised as the feature extractor does: "
    "read files with hubert_tf.load_audio (which scales integers to [-1, 1]) and prepare them with "
    "HubertFeatureExtractor / HubertProcessor"
)
_PCM_DTYPES = (np.int8, np.uint8, np.int16)


def to_float_tensor(value, name: str):
    """Casts audio (numpy, list or tensor) to a float32 tensor.

    int32/int64 values are cast; int8/uint8/int16 (raw PCM, far out of range) and non-finite samples are
    refused with a ValueError that says what to do. In a graph, non-finite samples fail an assertion
    with the same message (`fit`/`evaluate`/`predict` re-raise it as ValueError).
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        numpy_dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
        if numpy_dtype in _PCM_DTYPES:
            raise ValueError(f"{name} has dtype {numpy_dtype.name}, i.e. {PCM_HINT}")
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        value = value.astype(np.float32)
    tensor = tf.convert_to_tensor(value)
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise ValueError(f"{name} must be numeric, got dtype {tensor.dtype.name}")
    tensor = tf.cast(tensor, tf.float32) if tensor.dtype != tf.float32 else tensor
    if tf.executing_eagerly():
        bad = int(tf.size(tensor)) - int(tf.reduce_sum(tf.cast(tf.math.is_finite(tensor), tf.int32)))
        if bad:
            raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    elif _graph_checks():
        # Without it one NaN sample in a training batch turns every weight into NaN, silently.
        tensor = tf.debugging.assert_all_finite(tensor, f"{name} {NON_FINITE}")
    return tensor


def check_audio(input_values, min_samples: int):
    """Checks input_values is [batch, samples] with at least `min_samples` samples (static shapes now,
    dynamic ones with a graph assertion).

    Returns the checked tensor (in a graph: with the assertion attached).
    """
    shape = input_values.shape
    if shape.rank is not None and shape.rank != 2:
        hint = " (add a batch axis: x[None])" if shape.rank == 1 else (
            " (multi-channel audio: average the channels to mono first)" if shape.rank == 3 else "")
        raise ValueError(f"input_values must have shape [batch, samples], got {tuple(shape)}{hint}")
    short = (f"fewer than the minimum of {min_samples} ({MIN_SAMPLES_HINT}; 400 samples = 25 ms at 16 kHz)")
    if shape.rank == 2 and shape[1] is not None and shape[1] < min_samples:
        raise ValueError(f"input_values has {shape[1]} samples, {short}")
    if not _graph_checks():
        return input_values
    check = tf.debugging.assert_greater_equal(tf.shape(input_values)[-1], min_samples,
                                              message=f"input_values has {short}")
    with tf.control_dependencies([check]):
        return tf.identity(input_values)


_RANGE_MESSAGE = (f"input_values has samples beyond float16's range (|x| > {FLOAT16_MAX:g}) for a float16 model: "
                  "normalise the audio first (HubertFeatureExtractor), or use mixed_bfloat16")


def _check_float16_range(value):
    if isinstance(value, (np.ndarray, list)) or (tf.is_tensor(value) and tf.executing_eagerly()):
        array = np.asarray(value)
        if array.dtype.kind == "f" and array.size and float(np.nanmax(np.abs(array))) > FLOAT16_MAX:
            raise ValueError(_RANGE_MESSAGE)
        return value
    if tf.is_tensor(value) and value.dtype.is_floating and _graph_checks():
        check = tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(tf.cast(value, tf.float32))), FLOAT16_MAX,
                                               message=_RANGE_MESSAGE)
        with tf.control_dependencies([check]):
            return tf.identity(value)
    return value


def checked_for_compute_dtype(args, kwargs, compute_dtype: str):
    """For float16 models: the audio of a `__call__`'s (args, kwargs) checked against float16's range
    while still float32 (Keras casts float inputs before `call`; loud samples would become inf)."""
    if compute_dtype != "float16":
        return args, kwargs
    if "input_values" in kwargs:
        kwargs = {**kwargs, "input_values": _check_float16_range(kwargs["input_values"])}
    elif args:
        first = args[0]
        if isinstance(first, dict) and "input_values" in first:
            first = {**first, "input_values": _check_float16_range(first["input_values"])}
        elif isinstance(first, (list, tuple)) and first and not isinstance(first[0], (int, float)):
            first = type(first)([_check_float16_range(first[0]), *first[1:]])
        else:
            first = _check_float16_range(first)
        args = (first,) + tuple(args[1:])
    return args, kwargs


MASK_VALUES = "attention_mask must hold only 0 (padding) and 1 (valid sample)"


def check_attention_mask(attention_mask, input_values, min_samples: int = 1):
    """attention_mask must have the shape of input_values, hold only 0 and 1, and give every row at
    least `min_samples` valid samples. Returns the mask (in a graph: with the assertions attached)."""
    a, x = attention_mask.shape, input_values.shape
    if a.rank is not None and x.rank is not None and (a.rank != x.rank or not a.is_compatible_with(x)):
        raise ValueError(f"attention_mask has shape {tuple(a)}, expected the shape of input_values {tuple(x)}")
    few = f"every row of attention_mask needs at least {min_samples} valid samples ({MIN_SAMPLES_HINT})"
    if tf.executing_eagerly():
        values = attention_mask.numpy()
        if values.size and not np.isin(values, (0, 1)).all():
            raise ValueError(MASK_VALUES)
        if values.size and int(values.sum(axis=-1).min()) < min_samples:
            raise ValueError(f"{few}; got a row with {int(values.sum(axis=-1).min())}")
        return attention_mask
    if not _graph_checks():
        return attention_mask
    ints = tf.cast(attention_mask, tf.int32)
    checks = [
        tf.debugging.assert_equal(tf.shape(attention_mask), tf.shape(input_values),
                                  message="attention_mask must have the shape of input_values [batch, samples]"),
        tf.debugging.assert_equal(tf.reduce_all((ints == 0) | (ints == 1)), True, message=MASK_VALUES),
        tf.debugging.assert_greater_equal(tf.reduce_min(tf.reduce_sum(ints, axis=-1)), min_samples, message=few),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(attention_mask)


# Messages of the in-graph input assertions, which `fit`/`evaluate`/`predict` re-raise as ValueError.
GRAPH_INPUT_MESSAGES = (NON_FINITE, MIN_SAMPLES_HINT, MASK_VALUES, "float16's range",
                        "attention_mask must have the shape")


def input_error_message(error: BaseException) -> str | None:
    """The one-line message of a failed in-graph input assertion carried by `error`, else None."""
    text = str(error)
    for line in text.splitlines():
        if any(m in line for m in GRAPH_INPUT_MESSAGES):
            line = line.strip()
            for prefix in ("Condition x >= y did not hold", "assertion failed:"):
                line = line.split(prefix)[0].strip() or line
            return line.split(" : ")[0].strip(" .[]")
    return None


def plain_inputs(value):
    """`value` with a dict subclass (a processor's `BatchFeature`) made a plain dict: Keras' `fit()` data
    adapters and positional call arguments accept only plain containers. Anything else is returned as is."""
    if isinstance(value, Mapping) and type(value) is not dict:
        return dict(value)
    return value


def unwrapped_keras_error(error: BaseException) -> BaseException | None:
    """For a ValueError / TypeError Keras wrapped on its way out of a layer's `call`: the same error with
    its original one-line message (no ANSI escapes, no argument dump), keeping the traceback. None for any
    other error."""
    if not isinstance(error, (ValueError, TypeError)) or not getattr(error, "_keras_call_info_injected", False):
        return None
    message = original_message(str(error))
    if message is None:
        return None
    try:
        clean = type(error)(message)
    except TypeError:  # an exception class with another signature: leave it as Keras made it
        return None
    clean._keras_call_info_injected = True  # outer Keras layers pass it on untouched
    return clean.with_traceback(error.__traceback__)
