"""The input unpacker shared by the main layer and every model, and the checks on inputs.

Inputs come as one tensor / numpy array, as a list or tuple in signature order, as a dict, or as
keyword arguments (the conventions of the old transformers TF models, which Keras' `fit()` relies on).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

MIN_SAMPLES_HINT = "audio shorter than the receptive field of the conv feature encoder"


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
    "raw 16-bit PCM samples; the model expects float audio normalised as the feature extractor does: "
    "read files with hubert_tf.load_audio (which scales integers to [-1, 1]) and prepare them with "
    "HubertFeatureExtractor / HubertProcessor"
)


def to_float_tensor(value, name: str):
    """Casts audio (numpy, list or tensor) to a float32 tensor.

    int32/int64 values are cast; int16 (raw PCM, 1000x out of range) and non-finite samples are refused
    with a ValueError that says what to do.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.dtype(getattr(dtype, "as_numpy_dtype", dtype)) == np.int16:
        raise ValueError(f"{name} has dtype int16, i.e. {PCM_HINT}")
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
    return tensor


def check_audio(input_values, min_samples: int):
    """Checks input_values is [batch, samples] with at least `min_samples` samples (static when known)."""
    shape = input_values.shape
    if shape.rank is not None and shape.rank != 2:
        hint = " (add a batch axis: x[None])" if shape.rank == 1 else (
            " (multi-channel audio: average the channels to mono first)" if shape.rank == 3 else "")
        raise ValueError(f"input_values must have shape [batch, samples], got {tuple(shape)}{hint}")
    if shape.rank == 2 and shape[1] is not None and shape[1] < min_samples:
        raise ValueError(
            f"input_values has {shape[1]} samples, fewer than the minimum of {min_samples} "
            f"({MIN_SAMPLES_HINT}; 400 samples = 25 ms at 16 kHz)"
        )


def check_attention_mask(attention_mask, input_values):
    """attention_mask must have the shape of input_values and hold only 0 and 1."""
    a, x = attention_mask.shape, input_values.shape
    if a.rank is not None and x.rank is not None and (a.rank != x.rank or not a.is_compatible_with(x)):
        raise ValueError(f"attention_mask has shape {tuple(a)}, expected the shape of input_values {tuple(x)}")
    if tf.executing_eagerly():
        values = attention_mask.numpy()
        if values.size and not np.isin(values, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (valid sample)")
