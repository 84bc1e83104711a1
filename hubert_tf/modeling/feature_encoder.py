"""The convolutional feature encoder (waveform -> 50 Hz features) and the feature projection."""

from __future__ import annotations

import keras
import tensorflow as tf

from .. import cpu
from ..activations import get_activation
from ._tf_runtime import onednn_enabled
from .inputs import in_converter_trace
from .masking import conv_output_lengths

register = keras.saving.register_keras_serializable(package="hubert_tf")


@register
class TFHubertChannelNorm(keras.layers.Layer):
    """Group norm with one group per channel (the reference's `GroupNorm(C, C)`): each channel is
    normalised over time, per example.

    With `frame_mask` the statistics are taken over the valid frames only, so a padded example gives the
    same features as the example alone (the reference includes padding; pass no mask for its numbers).

    Args:
        channels: int. Number of channels.
        epsilon: float. Defaults to 1e-5 (torch's default).
    """

    def __init__(self, channels: int, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.epsilon = epsilon

    def build(self, input_shape=None):
        # autocast=False: the norm runs in float32 under mixed precision policies too.
        self.gamma = self.add_weight(name="gamma", shape=(self.channels,), initializer="ones", autocast=False)
        self.beta = self.add_weight(name="beta", shape=(self.channels,), initializer="zeros", autocast=False)

    def call(self, x, frame_mask=None, output_scale=1.0):
        # x: [batch, frames, channels]; statistics in float32 whatever the compute dtype. The output is
        # multiplied by `output_scale` (folded into gamma and beta).
        dtype = x.dtype
        x = tf.cast(x, tf.float32)
        if frame_mask is None:
            mean, variance = tf.nn.moments(x, axes=[1], keepdims=True)
        else:
            weights = tf.cast(frame_mask, tf.float32)[:, :, None]  # [batch, frames, 1]
            count = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)
            mean = tf.reduce_sum(x * weights, axis=1, keepdims=True) / count
            variance = tf.reduce_sum(tf.square(x - mean) * weights, axis=1, keepdims=True) / count
        return tf.cast(_normalized(x, mean, variance, self, output_scale), dtype)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "epsilon": self.epsilon}


def conv_windows(x, kernel_size: int, stride: int):
    """[batch, length, channels] -> [batch, frames, kernel_size * channels]: the input window of every
    output frame of a "valid" conv, frames = (length - kernel_size) // stride + 1, for
    kernel_size <= 2 * stride (every HuBERT feature-encoder layer); `windows @ kernel.reshape(kernel_size
    * channels, out)` is the conv.

    The first `stride` samples of each window are a reshape of the input (no copy); the other
    `kernel_size - stride` come from strided slices of one sample each, so the only copy is the
    concatenation (none at all when kernel_size == stride).
    """
    if not 0 < kernel_size <= 2 * stride:
        raise ValueError(f"conv_windows needs 0 < kernel_size <= 2 * stride, got kernel_size={kernel_size}, "
                         f"stride={stride}")
    batch, length, channels = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
    frames = tf.maximum((length - kernel_size) // stride + 1, 0)
    if kernel_size < stride:
        # rows of `stride` samples reach past the end: pad the (rarely used) short-kernel case
        x = tf.pad(x, [[0, 0], [0, tf.maximum(frames * stride - length, 0)], [0, 0]])
    # row t: samples [t * stride, (t + 1) * stride), frames * stride <= length when kernel_size >= stride
    rows = tf.reshape(x[:, : frames * stride], [batch, frames, stride * channels])
    if kernel_size <= stride:
        return rows if kernel_size == stride else rows[:, :, : kernel_size * channels]
    # sample t * stride + stride + j of window t, j < kernel_size - stride: [batch, frames, channels]
    tails = [x[:, stride + j: stride + j + (frames - 1) * stride + 1: stride] for j in range(kernel_size - stride)]
    return tf.concat([rows] + tails, axis=-1)


# The gain a scaled GELU output carries (see `TFHubertConvLayer.forward`), and its inverse.
GELU_GAIN = 2.0 ** 0.5
_SQRT_HALF = 0.5 ** 0.5


def _scaled_gelu(y):
    # sqrt(2) * GELU(sqrt(2) * y): three elementwise passes instead of five
    return y + y * tf.math.erf(y)


def _normalized(x, mean, variance, norm, out_scale):
    """float32 `((x - mean) / sqrt(variance + eps) * gamma + beta) * out_scale` with the norm layer's
    epsilon, gamma and beta, the factor folded into gamma and beta (no extra pass over x)."""
    gamma = tf.cast(norm.gamma, tf.float32) * out_scale
    beta = tf.cast(norm.beta, tf.float32) * out_scale
    return (x - mean) * (tf.math.rsqrt(variance + norm.epsilon) * gamma) + beta


def _layer_norm(layer, x, out_scale=1.0):
    """`layer(x) * out_scale` for a keras LayerNormalization over the last axis (float32 statistics)."""
    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.cast(_normalized(x, mean, variance, layer, out_scale), dtype)


def direct_conv_available() -> bool:
    """True where oneDNN runs these strided 1-D convs as a direct (brgemm) conv, as fast as the windowed
    matmul without its copy of the windows: AVX-512 and AMX CPUs. Below AVX-512 (AVX2) oneDNN's conv is
    an im2col + GEMM well below its own matmul, and the windowed matmul is faster. Follows
    `ONEDNN_MAX_CPU_ISA` as oneDNN does; read when a graph is traced (a SavedModel keeps the path of
    the machine that exported it; both are correct everywhere)."""
    return onednn_enabled() and cpu.isa() in ("AVX-512", "AMX")


@register
class TFHubertConvLayer(keras.layers.Layer):
    """One block of the feature encoder: conv -> optional norm -> activation.

    Args:
        in_channels: int. Input channels (1 for the waveform).
        out_channels: int. Output channels.
        kernel_size: int. Conv kernel size.
        stride: int. Conv stride.
        use_bias: bool. Conv bias (`conv_bias`).
        norm: None, "group" (one group per channel) or "layer" (layer norm over channels).
        activation: str. Activation name (`feat_extract_activation`).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, use_bias=False, norm=None,
                 activation="gelu", **kwargs):
        super().__init__(**kwargs)
        if norm not in (None, "group", "layer"):
            raise ValueError(f"norm must be None, 'group' or 'layer', got {norm!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.use_bias = use_bias
        self.norm = norm
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.conv = keras.layers.Conv1D(
            out_channels, kernel_size, strides=stride, use_bias=use_bias, name="conv",
            kernel_initializer="he_normal",
        )
        if norm == "group":
            self.layer_norm = TFHubertChannelNorm(out_channels, name="layer_norm")
        elif norm == "layer":
            self.layer_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="layer_norm")
        else:
            self.layer_norm = None

    def build(self, input_shape=None):
        self.conv.build((None, None, self.in_channels))
        if self.layer_norm is not None:
            self.layer_norm.build((None, None, self.out_channels))

    def call(self, x, frame_mask=None, training=None):
        # x: [batch, samples_in, in_channels] -> [batch, frames_out, out_channels]
        return self.forward(x, frame_mask=frame_mask, training=training)[0]

    def forward(self, x, frame_mask=None, training=None, input_gain=1.0, scaled_output=False):
        """The layer on an input that carries a gain, optionally giving a scaled output: what the feature
        encoder chains (see `TFHubertFeatureEncoder.call`).

        The exact GELU is `0.5 * z * (1 + erf(z / sqrt(2)))`: five passes over the [frames, channels]
        output (scale, erf, add, two products). With `y = z / sqrt(2)` it is `(y + y * erf(y)) / sqrt(2)`;
        the 1/sqrt(2) inside goes into this conv's kernel (or norm) and the one outside into the next
        conv's kernel, which is linear in its input, so between layers only `y + y * erf(y)` runs: three
        passes. Between two scaled layers the kernel factor is exactly 0.5.

        Args:
            x: [batch, samples_in, in_channels], equal to `input_gain` times the true input.
            frame_mask: optional [batch, frames_out] bool, for the group norm's statistics.
            training: bool or None.
            input_gain: 1.0 or `GELU_GAIN`.
            scaled_output: give `GELU_GAIN` times the output where that saves passes (an exact-GELU
                layer whose GELU is not fused into its matmul).

        Returns:
            (y, gain): [batch, frames_out, out_channels] and the gain it carries (1.0 or `GELU_GAIN`).
        """
        dtype = x.dtype
        windowed = self.kernel_size <= 2 * self.stride and (
            training or self.kernel_size == self.stride or not direct_conv_available())
        fused = windowed and self.norm is None  # the activation inside oneDNN's matmul kernel
        scaled = scaled_output and self.activation == "gelu" and not fused
        if fused:
            # matmul + bias + GELU, one oneDNN kernel: the output is written once
            return self._windowed_conv(x, activate=True, kernel_gain=1.0 / input_gain), 1.0
        out_scale = _SQRT_HALF if scaled else 1.0  # what the pre-activation is multiplied by
        if self.norm == "group" and self.in_channels == 1 and self.kernel_size <= 2 * self.stride:
            y = self._group_normed_waveform_conv(x, frame_mask, 1.0 / input_gain, out_scale)
        else:
            conv_gain = 1.0 / input_gain if self.norm else out_scale / input_gain
            y = self._windowed_conv(x, kernel_gain=conv_gain) if windowed else self._conv(x, conv_gain)
            if self.use_bias:
                bias = tf.cast(self.conv.bias, tf.float32) * (1.0 if self.norm else out_scale)
                y = tf.nn.bias_add(y, tf.cast(bias, y.dtype))
            if self.norm == "group":
                y = self.layer_norm(y, frame_mask=frame_mask, output_scale=out_scale)
            elif self.norm == "layer":
                y = _layer_norm(self.layer_norm, y, out_scale)
        if scaled:
            return self._float32(_scaled_gelu, y, dtype), GELU_GAIN
        return self._float32(self.activation_fn, y, dtype), 1.0

    @staticmethod
    def _float32(fn, x, dtype=None):
        # Half-precision elementwise math is slow on CPU (no vectorised bfloat16 erf): float32 inside;
        # the result in `dtype` (x's by default).
        dtype = dtype or x.dtype
        if x.dtype == tf.float32 and dtype == tf.float32:
            return fn(x)
        return tf.cast(fn(tf.cast(x, tf.float32)), dtype)

    def _kernel(self, dtype, gain):
        # [k, in, out] times `gain` (skipped when 1; in float32, so a bfloat16 kernel is rounded once)
        if gain == 1.0:
            return tf.cast(self.conv.kernel, dtype)
        return tf.cast(tf.cast(self.conv.kernel, tf.float32) * gain, dtype)

    def _kernel_matrix(self, dtype, gain=1.0):
        # [k, in, out] -> [k * in, out], rows in the order of `conv_windows`
        return tf.reshape(self._kernel(dtype, gain), [self.kernel_size * self.in_channels, self.out_channels])

    def _conv(self, x, kernel_gain):
        """TensorFlow's conv op ("valid", no bias): oneDNN's direct conv where it has one, and any kernel
        width."""
        return tf.nn.conv1d(x, self._kernel(x.dtype, kernel_gain), self.stride, "VALID")

    def _windowed_conv(self, x, activate=False, kernel_gain=1.0):
        """The conv as one matrix product over `conv_windows` ([batch * frames, k * in] @ [k * in, out]),
        then (with `activate`) the bias and the activation; without, no bias.

        Used in training (its gradient is two matmuls, much faster on CPU than TensorFlow's backprop of
        strided 1-D convs), for kernel == stride (the windows are a reshape, no copy) and below AVX-512
        (see `direct_conv_available`). A 2-D matmul followed by a bias add and the activation is what
        oneDNN's grappler pass fuses into one kernel, so a layer without a conv bias adds a zero one
        there: the output is written once, not re-read by the activation.
        """
        windows = conv_windows(x, self.kernel_size, self.stride)  # [batch, frames, k * in]
        batch, frames = tf.shape(windows)[0], tf.shape(windows)[1]
        y = tf.matmul(tf.reshape(windows, [-1, self.kernel_size * self.in_channels]),
                      self._kernel_matrix(x.dtype, kernel_gain))
        if activate:
            if self.use_bias:
                y = tf.nn.bias_add(y, tf.cast(self.conv.bias, y.dtype))
            elif y.dtype == tf.float32 and onednn_enabled():
                y = tf.nn.bias_add(y, tf.zeros([self.out_channels], y.dtype))
            y = self._float32(self.activation_fn, y)
        return tf.reshape(y, [batch, frames, self.out_channels])

    def _group_normed_waveform_conv(self, x, frame_mask, kernel_gain=1.0, out_scale=1.0):
        """conv -> per-channel group norm on the waveform, with the norm folded into the conv; the
        normalised output times `out_scale` (the activation is applied by the caller).

        The conv is `windows @ kernel` ([frames, k] @ [k, channels]); each channel's mean and variance
        over time follow from the mean and covariance of the k-sample windows (a k x k matrix), so the
        normalisation becomes a per-example scaled kernel and shift, and the [frames, channels] output is
        written once instead of being re-read by the norm. A conv bias cancels in the norm.
        """
        windows = conv_windows(tf.cast(x, tf.float32), self.kernel_size, self.stride)  # [batch, frames, k]
        if frame_mask is None:
            weights = tf.ones_like(windows[:, :, :1])  # [batch, frames, 1]
        else:
            weights = tf.expand_dims(tf.cast(frame_mask, tf.float32), -1)  # [batch, frames, 1]
        count = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)  # [batch, 1, 1]
        mean = tf.reduce_sum(windows * weights, axis=1, keepdims=True) / count  # [batch, 1, k]
        centered = windows - mean
        covariance = tf.matmul(centered * weights, centered, transpose_a=True) / count  # [batch, k, k]
        kernel = self._kernel_matrix(tf.float32, kernel_gain)  # [k, channels]
        channel_mean = tf.matmul(mean, kernel)  # [batch, 1, channels]
        channel_variance = tf.reduce_sum(tf.matmul(covariance, kernel) * kernel, axis=1, keepdims=True)
        norm = self.layer_norm
        gamma, beta = tf.cast(norm.gamma, tf.float32) * out_scale, tf.cast(norm.beta, tf.float32) * out_scale
        scale = gamma * tf.math.rsqrt(channel_variance + norm.epsilon)  # [batch, 1, channels]
        shift = beta - channel_mean * scale
        return tf.matmul(windows, kernel * scale) + shift  # float32 [batch, frames, channels]

    def get_config(self):
        return {
            **super().get_config(),
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": self.kernel_size, "stride": self.stride, "use_bias": self.use_bias,
            "norm": self.norm, "activation": self.activation,
        }


@register
class TFHubertFeatureEncoder(keras.layers.Layer):
    """Raw waveform -> conv features, the reference `HubertFeatureEncoder`.

    "group" norm: group norm after the first conv only; "layer" norm: layer norm after every conv.

    Args:
        conv_dim, conv_kernel, conv_stride: lists of int, one entry per conv layer.
        conv_bias: bool. Conv biases.
        feat_extract_norm: "group" or "layer".
        feat_extract_activation: str. Activation name.

    Example:

    >>> import numpy as np
    >>> enc = TFHubertFeatureEncoder([8, 8], [10, 3], [5, 2])
    >>> enc(np.zeros((1, 16000), "float32")).shape
    TensorShape([1, 1599, 8])
    """

    def __init__(self, conv_dim, conv_kernel, conv_stride, conv_bias=False, feat_extract_norm="group",
                 feat_extract_activation="gelu", **kwargs):
        super().__init__(**kwargs)
        self.conv_dim = list(conv_dim)
        self.conv_kernel = list(conv_kernel)
        self.conv_stride = list(conv_stride)
        self.conv_bias = conv_bias
        self.feat_extract_norm = feat_extract_norm
        self.feat_extract_activation = feat_extract_activation
        in_dims = [1] + self.conv_dim[:-1]
        self.conv_layers = []
        for i, (cin, cout, k, s) in enumerate(zip(in_dims, self.conv_dim, self.conv_kernel, self.conv_stride)):
            if feat_extract_norm == "layer":
                norm = "layer"
            else:
                norm = "group" if i == 0 else None
            self.conv_layers.append(
                TFHubertConvLayer(cin, cout, k, s, conv_bias, norm, feat_extract_activation, name=f"conv_layers.{i}")
            )

    def build(self, input_shape=None):
        for layer in self.conv_layers:
            layer.build()

    def call(self, input_values, sample_lengths=None, training=None):
        """input_values: [batch, samples] -> features [batch, frames, conv_dim[-1]].

        `sample_lengths` ([batch] ints), when given, restricts the first group norm's statistics to the
        valid samples (batch-invariant features); without it the numbers are the reference's.

        Between layers the activations may carry a gain of sqrt(2) (`TFHubertConvLayer.forward`: two
        fewer passes per exact-GELU layer); the last layer's output carries none.
        """
        # expand_dims, not x[:, :, None]: TFLite has no strided slice with a new axis on dynamic shapes.
        x = tf.expand_dims(input_values, -1)  # [batch, samples, 1]
        lengths = sample_lengths
        gain = 1.0
        # converters get the plain GELU formula, which TFLite turns into its one GELU op
        scale_between = not in_converter_trace()
        last = len(self.conv_layers) - 1
        for i, layer in enumerate(self.conv_layers):
            frame_mask = None
            if lengths is not None:
                lengths = conv_output_lengths(lengths, [layer.kernel_size], [layer.stride])
                if layer.norm == "group":
                    frames = conv_output_lengths(tf.shape(x)[1], [layer.kernel_size], [layer.stride])
                    frame_mask = tf.sequence_mask(tf.maximum(lengths, 0), frames)
            x, gain = layer.forward(x, frame_mask=frame_mask, training=training, input_gain=gain,
                                    scaled_output=scale_between and i < last)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "conv_dim": self.conv_dim, "conv_kernel": self.conv_kernel, "conv_stride": self.conv_stride,
            "conv_bias": self.conv_bias, "feat_extract_norm": self.feat_extract_norm,
            "feat_extract_activation": self.feat_extract_activation,
        }


@register
class TFHubertFeatureProjection(keras.layers.Layer):
    """Conv features -> encoder width: optional layer norm (`feat_proj_layer_norm`), dense, dropout.

    Args:
        in_dim: int. `conv_dim[-1]`.
        hidden_size: int. Encoder width.
        feat_proj_layer_norm: bool. Apply the layer norm first.
        layer_norm_eps: float.
        feat_proj_dropout: float.
    """

    def __init__(self, in_dim, hidden_size, feat_proj_layer_norm=True, layer_norm_eps=1e-5,
                 feat_proj_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.in_dim = in_dim
        self.hidden_size = hidden_size
        self.feat_proj_layer_norm = feat_proj_layer_norm
        self.layer_norm_eps = layer_norm_eps
        self.feat_proj_dropout = feat_proj_dropout
        self.layer_norm = (
            keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="layer_norm") if feat_proj_layer_norm else None
        )
        self.projection = keras.layers.Dense(hidden_size, name="projection")
        self.dropout = keras.layers.Dropout(feat_proj_dropout)

    def build(self, input_shape=None):
        if self.layer_norm is not None:
            self.layer_norm.build((None, None, self.in_dim))
        self.projection.build((None, None, self.in_dim))

    def call(self, features, training=False):
        # features: [batch, frames, in_dim] -> [batch, frames, hidden_size]
        if self.layer_norm is not None:
            features = self.layer_norm(features)
        return self.dropout(self.projection(features), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "in_dim": self.in_dim, "hidden_size": self.hidden_size,
            "feat_proj_layer_norm": self.feat_proj_layer_norm, "layer_norm_eps": self.layer_norm_eps,
            "feat_proj_dropout": self.feat_proj_dropout,
        }
