"""Compiled inference: the one cache of compiled functions. One `tf.function` per model and setting,
traced once for every batch size and audio length (input_signature [None, None]), no host round trips
inside. The pipelines, units and the benchmark all run the model through it.

    fn = inference_function(model)             # jit_compile="auto"
    logits = fn(audio)["logits"]               # TFHubertForCTC; TFHubertModel gives "last_hidden_state"
    fn(audio_batch, attention_mask)            # padded batches
    inference_function(model, exact_padding=True, output_layers=[9])   # features of layer 9 only
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .main_layer import TFHubertMainLayer, resolve_layers

# What jit_compile="auto" picks, by compute dtype (measured with `python -m hubert_tf.benchmark` on a
# 2-core AVX-512 CPU, see the README's performance table). The TensorFlow graph everywhere: XLA is ~12 %
# faster for float32 once compiled, but compiles every new input shape anew (~2 s for the base model),
# which pays off only when one shape repeats many times (pass jit_compile=True for that); for bfloat16
# XLA is slower (TensorFlow's oneDNN bfloat16 kernels beat XLA's).
AUTO_JIT: dict[str, bool] = {"float32": False, "bfloat16": False, "float16": False}
# The same for a training step (`hubert_tf.benchmark --train`): XLA was ~2x slower, with a ~40 s compile.
AUTO_TRAIN_JIT: dict[str, bool] = {"float32": False, "bfloat16": False}

_CACHE_ATTR = "_hubert_tf_inference_functions"
_AUDIO = tf.TensorSpec([None, None], tf.float32, name="input_values")
_MASK = tf.TensorSpec([None, None], tf.int32, name="attention_mask")


def resolve_jit_compile(model, jit_compile: bool | str = "auto") -> bool:
    """`jit_compile` as a bool; "auto" looks up `AUTO_JIT` for the model's compute dtype."""
    if jit_compile == "auto":
        return AUTO_JIT.get(model.compute_dtype, False)
    if not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")
    return jit_compile


class InferenceFunction:
    """`fn(input_values, attention_mask=None)` -> the model's outputs as a dict of float32 tensors.

    Two `tf.function`s (without and with a mask), each with input_signature [None, None]: one graph for
    every batch size and length. Under XLA (`jit_compile=True`) each new input shape is compiled once
    (a few seconds for the base model) and reused afterwards. The model is called exactly as a user
    calls it (`model(x, attention_mask=..., exact_padding=..., output_layers=...)`): no head is
    re-applied here.

    Attributes:
        jit_compile, output_hidden_states, exact_padding, output_layers: the settings.
        tracing_count: graphs traced so far (1 per function used, whatever the shapes).
    """

    def __init__(self, model, jit_compile: bool, output_hidden_states: bool, exact_padding: bool,
                 output_layers: tuple[int, ...] | None):
        self.model = model
        self.jit_compile = jit_compile
        self.output_hidden_states = output_hidden_states
        self.exact_padding = exact_padding
        self.output_layers = output_layers

        # The body alone (`model.hubert`, for features of any model class) stops after the highest
        # requested layer, as the bare model does.
        extra = {"stop_early": True} if isinstance(model, TFHubertMainLayer) else {}

        def forward(input_values, attention_mask):
            out = model(input_values, attention_mask=attention_mask, output_hidden_states=output_hidden_states,
                        output_layers=output_layers, exact_padding=exact_padding, training=False, **extra)
            return {k: tuple(tf.cast(t, tf.float32) for t in v) if isinstance(v, tuple) else tf.cast(v, tf.float32)
                    for k, v in out.items() if k not in ("loss", "frame_lengths")}

        self._unmasked = tf.function(lambda x: forward(x, None), input_signature=[_AUDIO], jit_compile=jit_compile)
        self._masked = tf.function(forward, input_signature=[_AUDIO, _MASK], jit_compile=jit_compile)

    def __call__(self, input_values, attention_mask=None) -> dict[str, Any]:
        """input_values: float [batch, samples]; attention_mask: optional int [batch, samples]."""
        x = tf.convert_to_tensor(input_values)
        if x.dtype != tf.float32:
            x = tf.cast(x, tf.float32)
        if x.shape.rank != 2:
            raise ValueError(f"input_values must have shape [batch, samples], got {tuple(x.shape)}")
        if attention_mask is None:
            return self._unmasked(x)
        mask = tf.convert_to_tensor(attention_mask)
        if mask.dtype != tf.int32:
            mask = tf.cast(mask, tf.int32)
        if mask.shape != x.shape:
            raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, expected {tuple(x.shape)}")
        return self._masked(x, mask)

    @property
    def tracing_count(self) -> int:
        return self._unmasked.experimental_get_tracing_count() + self._masked.experimental_get_tracing_count()

    def __repr__(self) -> str:
        return (f"InferenceFunction({type(self.model).__name__}, jit_compile={self.jit_compile}, "
                f"output_hidden_states={self.output_hidden_states}, exact_padding={self.exact_padding}, "
                f"output_layers={self.output_layers})")


def inference_function(model, jit_compile: bool | str = "auto", output_hidden_states: bool = False,
                       exact_padding: bool = False, output_layers=None) -> InferenceFunction:
    """The model's compiled inference function, built once and cached on the model.

    Args:
        model: a hubert_tf model (TFHubertModel, TFHubertForCTC, TFHubertForSequenceClassification, ...),
            or the body of one (`model.hubert`, a TFHubertMainLayer: features without any head's work).
        jit_compile: True (XLA: compiled per input shape; fastest for float32 when shapes repeat, e.g.
            fixed-size chunks or serving), False (TensorFlow graph: one graph for all shapes), or "auto"
            (see `AUTO_JIT`: the graph).
        output_hidden_states: also return the hidden states of every layer.
        exact_padding: with an attention mask, padded rows give exactly the outputs of the rows alone,
            group-norm (base) models included.
        output_layers: optional int or list of ints: return only these hidden states (a bare
            `TFHubertModel` also stops after the highest one).

    Returns:
        InferenceFunction: `fn(input_values [batch, samples], attention_mask=None)` -> dict with
        "last_hidden_state" [batch, frames, hidden] (TFHubertModel) or "logits" [batch, frames, vocab]
        (TFHubertForCTC), and "hidden_states" when asked.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> model = TFHubertModel(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> fn = inference_function(model, jit_compile=False)
    >>> fn(np.zeros((1, 16000), "float32"))["last_hidden_state"].shape
    TensorShape([1, 49, 32])
    >>> fn(np.zeros((2, 8000), "float32"))["last_hidden_state"].shape, fn.tracing_count
    (TensorShape([2, 24, 32]), 1)
    """
    jit = resolve_jit_compile(model, jit_compile)
    layers = resolve_layers(output_layers, model.config.num_hidden_layers)
    key = (jit, bool(output_hidden_states), bool(exact_padding), layers)
    return cached(model, key, lambda: InferenceFunction(model, *key))


def cached(model, key, build):
    """The compiled function cached on `model` under `key`, made by `build()` on first use (also holds
    `hubert_tf.quantization`'s functions; every value has a `tracing_count`)."""
    cache = model.__dict__.get(_CACHE_ATTR)
    if cache is None:
        cache = {}
        # object.__setattr__: a plain attribute, not tracked by Keras (no weights, no config).
        object.__setattr__(model, _CACHE_ATTR, cache)
    if key not in cache:
        cache[key] = build()
    return cache[key]


def tracing_count(model) -> int:
    """Graphs traced so far by every cached inference function of `model` and of its body (for tests and
    benchmarks)."""
    owners = [model] + ([model.hubert] if hasattr(model, "hubert") else [])
    return sum(f.tracing_count for owner in owners for f in owner.__dict__.get(_CACHE_ATTR, {}).values())
