"""Convolutional relative positional embedding: a wide grouped conv over time (kernel 128, 16 groups)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ..activations import get_activation

register = keras.saving.register_keras_serializable(package="hubert_tf")


def grouped_conv1d(x, kernel, groups: int):
    """'Same'-style grouped 1-D conv whose forward and backward both run on CPU.

    TensorFlow's native grouped conv has no CPU gradient (the old TF HuBERT could not train on CPU);
    `groups` plain convs over channel slices have one everywhere, and XLA fuses them.

    Args:
        x: [batch, frames, channels], already padded in time.
        kernel: [k, channels // groups, channels].
        groups: int.
    Returns:
        [batch, frames - k + 1, channels].
    """
    if groups == 1:
        return tf.nn.conv1d(x, kernel, stride=1, padding="VALID")
    xs = tf.split(x, groups, axis=-1)  # groups x [batch, frames, c/g]
    ks = tf.split(kernel, groups, axis=-1)  # groups x [k, c/g, c/g]
    return tf.concat([tf.nn.conv1d(xi, ki, stride=1, padding="VALID") for xi, ki in zip(xs, ks)], axis=-1)


@register
class TFHubertPositionalConvEmbedding(keras.layers.Layer):
    """The reference `HubertPositionalConvEmbedding`.

    Weight normalisation as the reference (`weight_norm(conv, dim=2)`): kernel = g * v / ||v||, the
    norm taken over every axis but the kernel (time) axis. With `conv_pos_batch_norm=True` a batch norm
    precedes a plain conv instead. Padding k // 2 on both sides; for even k the last frame is dropped.

    Args:
        hidden_size: int. Channels.
        num_conv_pos_embeddings: int. Kernel size k.
        num_conv_pos_embedding_groups: int. Groups.
        conv_pos_batch_norm: bool. Batch norm + plain conv instead of weight normalisation.
        activation: str. `feat_extract_activation`.
    """

    def __init__(self, hidden_size, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                 conv_pos_batch_norm=False, activation="gelu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_conv_pos_embeddings = num_conv_pos_embeddings
        self.num_conv_pos_embedding_groups = num_conv_pos_embedding_groups
        self.conv_pos_batch_norm = conv_pos_batch_norm
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.batch_norm = (
            keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="batch_norm")
            if conv_pos_batch_norm else None
        )
        self.conv = _PositionalConv(
            hidden_size, num_conv_pos_embeddings, num_conv_pos_embedding_groups,
            weight_norm=not conv_pos_batch_norm, name="conv",
        )

    def build(self, input_shape=None):
        if self.batch_norm is not None:
            self.batch_norm.build((None, None, self.hidden_size))
        self.conv.build()

    def call(self, hidden_states, training=False):
        # hidden_states: [batch, frames, hidden]
        if self.batch_norm is not None:
            hidden_states = self.batch_norm(hidden_states, training=training)
        return self.activation_fn(self.conv(hidden_states))

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size, "num_conv_pos_embeddings": self.num_conv_pos_embeddings,
            "num_conv_pos_embedding_groups": self.num_conv_pos_embedding_groups,
            "conv_pos_batch_norm": self.conv_pos_batch_norm, "activation": self.activation,
        }


@register
class _PositionalConv(keras.layers.Layer):
    """The grouped conv itself, holding `weight_v`/`weight_g` (weight norm) or `kernel`, and `bias`.

    Variables use the TF conv layout: v / kernel [k, hidden / groups, hidden], g [k, 1, 1].
    """

    def __init__(self, hidden_size, kernel_size, groups, weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.groups = groups
        self.weight_norm = weight_norm

    def build(self, input_shape=None):
        shape = (self.kernel_size, self.hidden_size // self.groups, self.hidden_size)
        fan_in = shape[0] * shape[1]
        init = keras.initializers.RandomNormal(stddev=(2.0 / fan_in) ** 0.5)
        if self.weight_norm:
            # autocast=False: under a mixed precision policy the norm is taken on the float32 values.
            self.weight_v = self.add_weight(name="weight_v", shape=shape, initializer=init, autocast=False)
            # g starts as ||v|| (per kernel position), as torch's weight_norm initialises it.
            self.weight_g = self.add_weight(name="weight_g", shape=(self.kernel_size, 1, 1), initializer="ones",
                                            autocast=False)
            self.weight_g.assign(tf.norm(self.weight_v, axis=[1, 2], keepdims=True))
        else:
            self.kernel = self.add_weight(name="kernel", shape=shape, initializer=init)
        self.bias = self.add_weight(name="bias", shape=(self.hidden_size,), initializer="zeros")

    def effective_kernel(self):
        """The conv kernel [k, hidden / groups, hidden], weight-normalised in float32."""
        if not self.weight_norm:
            return self.kernel
        v = tf.cast(self.weight_v, tf.float32)
        g = tf.cast(self.weight_g, tf.float32)
        return g * v / tf.norm(v, axis=[1, 2], keepdims=True)

    def call(self, x):
        # x: [batch, frames, hidden] -> [batch, frames, hidden]
        k = self.kernel_size
        kernel = tf.cast(self.effective_kernel(), x.dtype)
        x = tf.pad(x, [[0, 0], [k // 2, k // 2], [0, 0]])
        y = grouped_conv1d(x, kernel, self.groups) + tf.cast(self.bias, x.dtype)
        if k % 2 == 0:
            y = y[:, :-1]  # the reference's HubertSamePadLayer
        return y

    def get_config(self):
        return {
            **super().get_config(), "hidden_size": self.hidden_size, "kernel_size": self.kernel_size,
            "groups": self.groups, "weight_norm": self.weight_norm,
        }
