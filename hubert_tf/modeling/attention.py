"""Multi-head scaled dot-product self-attention with a padding mask."""

from __future__ import annotations

import keras
import tensorflow as tf

from ._tf_runtime import in_xla_context, onednn_enabled
from .dense import dense

register = keras.saving.register_keras_serializable(package="hubert_tf")


def padding_bias(frame_mask, dtype):
    """[batch, frames] bool -> additive bias [batch, 1, 1, frames]: 0 on valid keys, a large negative
    number on padded ones (the reference adds `finfo(dtype).min`)."""
    big_negative = tf.constant(-1e9 if dtype == tf.float32 else -3e4, dtype=dtype)
    return tf.where(frame_mask, tf.constant(0, dtype), big_negative)[:, None, None, :]


def attention_softmax(scores):
    """Softmax over keys with float32 arithmetic whatever the dtype of `scores`.

    bfloat16 scores go straight to TF's oneDNN softmax, which computes in float32 inside: bit-identical
    to upcasting first and ~2x faster (no float32 copy of the [batch, heads, frames, frames] scores).
    Elsewhere (no oneDNN, XLA, other dtypes) the scores are upcast explicitly.
    """
    if scores.dtype == tf.bfloat16 and onednn_enabled() and not in_xla_context():
        return tf.nn.softmax(scores, axis=-1)
    return tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1), scores.dtype)


@register
class TFHubertAttention(keras.layers.Layer):
    """The reference `HubertAttention`: q/k/v/out projections with biases, softmax(q k^T / sqrt(d)) v.

    Args:
        hidden_size: int. Model width.
        num_heads: int. Heads; `hidden_size` must be divisible by it.
        dropout: float. Dropout on the attention probabilities (training only).
    """

    def __init__(self, hidden_size, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout_rate = dropout
        self.q_proj = keras.layers.Dense(hidden_size, name="q_proj")
        self.k_proj = keras.layers.Dense(hidden_size, name="k_proj")
        self.v_proj = keras.layers.Dense(hidden_size, name="v_proj")
        self.out_proj = keras.layers.Dense(hidden_size, name="out_proj")
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape=None):
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            proj.build((None, None, self.hidden_size))

    def _split_heads(self, x):
        # [batch, frames, hidden] -> [batch, heads, frames, head_dim]
        batch, frames = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [batch, frames, self.num_heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(self, hidden_states, bias=None, output_attentions=False, training=False):
        """hidden_states: [batch, frames, hidden]; bias: additive [batch, 1, 1, frames] or None.

        Returns (output [batch, frames, hidden], probabilities [batch, heads, frames, frames] or None).
        """
        q = self._split_heads(dense(self.q_proj, hidden_states) * (self.head_dim ** -0.5))
        k = self._split_heads(dense(self.k_proj, hidden_states))
        v = self._split_heads(dense(self.v_proj, hidden_states))
        scores = tf.matmul(q, k, transpose_b=True)  # [batch, heads, frames, frames]
        if bias is not None:
            scores = scores + tf.cast(bias, scores.dtype)
        probs = attention_softmax(scores)
        context = tf.matmul(self.dropout(probs, training=training), v)  # [batch, heads, frames, head_dim]
        context = tf.transpose(context, [0, 2, 1, 3])
        context = tf.reshape(context, [tf.shape(context)[0], tf.shape(context)[1], self.hidden_size])
        return dense(self.out_proj, context), (probs if output_attentions else None)

    def get_config(self):
        return {
            **super().get_config(), "hidden_size": self.hidden_size, "num_heads": self.num_heads,
            "dropout": self.dropout_rate,
        }
