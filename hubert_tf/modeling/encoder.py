"""The Transformer encoder: post-LN (`TFHubertEncoder`, base models) and pre-LN
(`TFHubertEncoderStableLayerNorm`, large / xlarge models)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ..activations import get_activation
from ._tf_runtime import in_xla_context, sublayers
from .adapters import TFWav2Vec2AttnAdapterLayer
from .attention import TFHubertAttention, padding_bias
from .dense import dense
from .positional_conv import TFHubertPositionalConvEmbedding

register = keras.saving.register_keras_serializable(package="hubert_tf")


def _checkpointed(layer, bias):
    """`x -> (layer(x, bias, training=True), None)` whose activations are recomputed in the backward
    pass (`tf.recompute_grad`) instead of being kept for it.

    The recomputation must draw the dropout masks of the forward pass: Keras' dropout layers advance a
    seed-generator state on every call, so the states are read before the forward pass and put back at
    the start of each run of the layer (as torch's checkpoint restores its RNG state). Both runs then
    leave the states where one plain call would.
    """
    generators = [sub.seed_generator for sub in sublayers(layer) if isinstance(sub, keras.layers.Dropout)]
    states = [tf.identity(generator.state.value) for generator in generators]

    @tf.recompute_grad
    def run(x):
        for generator, state in zip(generators, states):
            generator.state.assign(state)
        return layer(x, bias=bias, training=True)[0]

    return lambda x: (run(x), None)


@register
class TFHubertFeedForward(keras.layers.Layer):
    """dense(hidden -> intermediate) -> activation -> dropout -> dense(intermediate -> hidden) -> dropout."""

    def __init__(self, hidden_size, intermediate_size, hidden_act="gelu", activation_dropout=0.0,
                 hidden_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.activation_dropout = activation_dropout
        self.hidden_dropout = hidden_dropout
        self.act_fn = get_activation(hidden_act)
        self.intermediate_dense = keras.layers.Dense(intermediate_size, name="intermediate_dense")
        self.intermediate_dropout = keras.layers.Dropout(activation_dropout)
        self.output_dense = keras.layers.Dense(hidden_size, name="output_dense")
        self.output_dropout = keras.layers.Dropout(hidden_dropout)

    def build(self, input_shape=None):
        self.intermediate_dense.build((None, None, self.hidden_size))
        self.output_dense.build((None, None, self.intermediate_size))

    def call(self, x, training=False):
        # x: [batch, frames, hidden]; `dense`: matmul, bias and activation fused by oneDNN
        x = self.intermediate_dropout(dense(self.intermediate_dense, x, self.act_fn), training=training)
        return self.output_dropout(dense(self.output_dense, x), training=training)

    def get_config(self):
        return {
            **super().get_config(), "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act, "activation_dropout": self.activation_dropout,
            "hidden_dropout": self.hidden_dropout,
        }


@register
class TFHubertEncoderLayer(keras.layers.Layer):
    """One Transformer layer.

    post-LN (`stable_layer_norm=False`):  x = LN(x + attn(x));  x = LN(x + ff(x))
    pre-LN  (`stable_layer_norm=True`):   x = x + attn(LN(x));  x = x + ff(LN(x))

    Args:
        hidden_size, num_attention_heads, intermediate_size: ints.
        hidden_act: str.
        hidden_dropout, activation_dropout, attention_dropout: floats.
        layer_norm_eps: float.
        stable_layer_norm: bool. Pre-LN when True.
        adapter_attn_dim: optional int. An MMS attention adapter after the (pre-LN) layer, added to its
            output (wav2vec2 configs with `adapter_attn_dim`).
    """

    def __init__(self, hidden_size, num_attention_heads, intermediate_size, hidden_act="gelu",
                 hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, layer_norm_eps=1e-5,
                 stable_layer_norm=False, adapter_attn_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout = hidden_dropout
        self.activation_dropout = activation_dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.stable_layer_norm = stable_layer_norm
        self.attention = TFHubertAttention(hidden_size, num_attention_heads, attention_dropout, name="attention")
        self.dropout = keras.layers.Dropout(hidden_dropout)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="layer_norm")
        self.feed_forward = TFHubertFeedForward(
            hidden_size, intermediate_size, hidden_act, activation_dropout, hidden_dropout, name="feed_forward"
        )
        self.final_layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="final_layer_norm")
        self.adapter_attn_dim = adapter_attn_dim
        self.adapter_layer = (None if adapter_attn_dim is None else
                              TFWav2Vec2AttnAdapterLayer(hidden_size, adapter_attn_dim, name="adapter_layer"))

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.attention.build(shape)
        self.layer_norm.build(shape)
        self.feed_forward.build(shape)
        self.final_layer_norm.build(shape)
        if self.adapter_layer is not None:
            self.adapter_layer.build(shape)

    def call(self, x, bias=None, output_attentions=False, training=False):
        # x: [batch, frames, hidden] -> ([batch, frames, hidden], attention probabilities or None)
        if self.stable_layer_norm:
            attn, probs = self.attention(self.layer_norm(x), bias=bias, output_attentions=output_attentions,
                                         training=training)
            x = x + self.dropout(attn, training=training)
            x = x + self.feed_forward(self.final_layer_norm(x), training=training)
            if self.adapter_layer is not None:
                x = x + self.adapter_layer(x)
        else:
            attn, probs = self.attention(x, bias=bias, output_attentions=output_attentions, training=training)
            x = self.layer_norm(x + self.dropout(attn, training=training))
            x = self.final_layer_norm(x + self.feed_forward(x, training=training))
        return x, probs

    def get_config(self):
        return {
            **super().get_config(), "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads, "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act, "hidden_dropout": self.hidden_dropout,
            "activation_dropout": self.activation_dropout, "attention_dropout": self.attention_dropout,
            "layer_norm_eps": self.layer_norm_eps, "stable_layer_norm": self.stable_layer_norm,
            **({} if self.adapter_attn_dim is None else {"adapter_attn_dim": self.adapter_attn_dim}),
        }


@register
class TFHubertEncoder(keras.layers.Layer):
    """The reference `HubertEncoder` (post-LN):
    zero padded frames -> x + pos_conv(x) -> layer norm -> dropout -> layers.

    `hidden_states` (when asked) holds the input of every layer and then the final output, so
    `hidden_states[-1] == last_hidden_state`.

    Args:
        config: HubertConfig (or its dict).
    """

    stable_layer_norm = False

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        from ..configuration import HubertConfig, config_from_dict

        self.config = config if isinstance(config, HubertConfig) else config_from_dict(config)
        c = self.config
        # MMS attention adapters exist only in pre-LN layers, as in the reference.
        adapter_attn_dim = getattr(c, "adapter_attn_dim", None) if self.stable_layer_norm else None
        self.pos_conv_embed = TFHubertPositionalConvEmbedding(
            c.hidden_size, c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups, c.conv_pos_batch_norm,
            c.feat_extract_activation, name="pos_conv_embed",
        )
        self.layer_norm = keras.layers.LayerNormalization(epsilon=c.layer_norm_eps, name="layer_norm")
        self.dropout = keras.layers.Dropout(c.hidden_dropout)
        # Recompute each layer's activations in the backward pass instead of keeping them (training
        # only; set by the model's `gradient_checkpointing_enable()`, not saved with the model).
        self.gradient_checkpointing = False
        self.layers = [
            TFHubertEncoderLayer(
                c.hidden_size, c.num_attention_heads, c.intermediate_size, c.hidden_act, c.hidden_dropout,
                c.activation_dropout, c.attention_dropout, c.layer_norm_eps, self.stable_layer_norm,
                adapter_attn_dim=adapter_attn_dim, name=f"layers.{i}",
            )
            for i in range(c.num_hidden_layers)
        ]

    def build(self, input_shape=None):
        shape = (None, None, self.config.hidden_size)
        self.pos_conv_embed.build(shape)
        self.layer_norm.build(shape)
        for layer in self.layers:
            layer.build(shape)

    def _run_layer(self, layer, x, bias, output_attentions, training):
        """One layer, skipped with probability `layerdrop` in training (drawn anew at every step), and
        recomputed in the backward pass with gradient checkpointing."""
        if training and self.gradient_checkpointing and not output_attentions:
            call = _checkpointed(layer, bias)
        else:
            def call(v):
                return layer(v, bias=bias, output_attentions=output_attentions, training=training)
        layerdrop = self.config.layerdrop
        if not (training and layerdrop > 0.0):
            return call(x)
        keep = tf.random.uniform([]) >= layerdrop
        if in_xla_context() or self.gradient_checkpointing:
            # XLA cannot compile the gradient of a `tf.cond` around Dense layers (shape arguments
            # become runtime values), and TensorFlow cannot take the gradient of a `tf.cond` around
            # `tf.recompute_grad`: there the layer always runs and is selected.
            y, probs = call(x)
            y = tf.where(keep, y, x)
            if output_attentions:
                probs = tf.where(keep, probs, tf.zeros_like(probs))
            return y, probs

        def run():
            y, probs = call(x)
            return (y, probs) if output_attentions else y

        def skip():
            if not output_attentions:
                return x
            shape = tf.shape(x)
            return x, tf.zeros([shape[0], self.config.num_attention_heads, shape[1], shape[1]], x.dtype)

        out = tf.cond(keep, run, skip)
        return out if output_attentions else (out, None)

    def call(self, hidden_states, frame_mask=None, output_attentions=False, output_hidden_states=False,
             output_layers=None, stop_early=False, training=False):
        """hidden_states: [batch, frames, hidden]; frame_mask: [batch, frames] bool or None.

        Args:
            output_layers: optional sorted tuple of hidden-state indices in [0, num_hidden_layers] to
                return (instead of all of them with `output_hidden_states`).
            stop_early: with `output_layers`, run no layer past the highest one requested; the last
                hidden state returned is then that layer's.

        Returns (last_hidden_state, hidden_states tuple or None, attentions tuple or None).
        """
        num_layers = len(self.layers)
        if output_layers is None and output_hidden_states:
            output_layers = tuple(range(num_layers + 1))
        keep = set(output_layers or ())
        run = max(keep) if (stop_early and keep) else num_layers
        bias = None
        if frame_mask is not None:
            # Padded frames are zeroed before the positional conv, as in the reference.
            hidden_states = hidden_states * tf.cast(frame_mask, hidden_states.dtype)[:, :, None]
            bias = padding_bias(frame_mask, hidden_states.dtype)
        x = hidden_states + self.pos_conv_embed(hidden_states, training=training)
        if not self.stable_layer_norm:
            x = self.layer_norm(x)
        x = self.dropout(x, training=training)
        kept, all_attentions = {}, []
        for index, layer in enumerate(self.layers[:run]):
            if index in keep:
                kept[index] = x
            x, probs = self._run_layer(layer, x, bias, output_attentions, training)
            all_attentions.append(probs)
        if run == num_layers and self.stable_layer_norm:
            x = self.layer_norm(x)
        if run in keep:
            kept[run] = x
        return (
            x,
            tuple(kept[i] for i in output_layers) if output_layers else None,
            tuple(all_attentions) if output_attentions else None,
        )

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


@register
class TFHubertEncoderStableLayerNorm(TFHubertEncoder):
    """The reference `HubertEncoderStableLayerNorm` (pre-LN):
    zero padded frames -> x + pos_conv(x) -> dropout -> pre-LN layers -> final layer norm.

    `hidden_states[-1]` is the final layer-normed output (== `last_hidden_state`), the convention of
    transformers 4.x and of the old TF implementation.
    """

    stable_layer_norm = True
