"""The only module that touches private TensorFlow / Keras APIs.

Each probe is small, guarded (a moved private API degrades to the safe answer instead of breaking
imports) and cached where the answer cannot change within a process.
"""

from __future__ import annotations

import functools

import tensorflow as tf


def in_xla_context() -> bool:
    """True while tracing a function compiled with XLA (`jit_compile=True`)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - TF internals moved
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@functools.lru_cache(maxsize=None)
def onednn_enabled() -> bool:
    """True when this TensorFlow build runs oneDNN (MKL) kernels."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - TF internals moved
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def freeze_concrete_function(concrete_function):
    """Variables of a concrete function turned into constants (for the TFLite converter, whose
    resource-variable path leaves them uninitialised in TF 2.21)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete_function)


def sublayers(layer):
    """Every layer below `layer` (Keras' own recursive walk)."""
    return layer._flatten_layers(include_self=False)


def compiled_metrics(model):
    """The metrics given to `compile(metrics=..., weighted_metrics=...)` as Keras keeps them (one
    `CompileMetrics`, built on the first batch), or None."""
    return getattr(model, "_compile_metrics", None)


def has_compiled_loss(model) -> bool:
    """True when `compile()` was given a loss (Keras keeps it in a private attribute)."""
    return getattr(model, "_compile_loss", None) is not None


def add_tflite_metadata(flatbuffer: bytes, name: str, value: bytes) -> bytes:
    """The TFLite flatbuffer with a metadata entry `name` -> `value` (the schema's `Model.metadata`)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = list(value)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(flatbuffer: bytes, name: str) -> bytes | None:
    """The value of metadata entry `name` of a TFLite flatbuffer (read lazily, no full parse), or None."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAsModel(flatbuffer, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() is not None and entry.Name().decode() == name:
                return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    except Exception:  # not a flatbuffer we can read: no metadata, the interpreter reports the rest
        return None
    return None

