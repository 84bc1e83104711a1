"""A Keras `Dense` applied as the ops oneDNN fuses: 2-D MatMul -> BiasAdd (-> activation).

Keras' `Dense` on a [batch, frames, in] tensor runs a batched matmul, an add and the activation as
separate passes over the [batch * frames, out] output. TensorFlow's grappler remapper fuses a 2-D
`MatMul` followed by `BiasAdd` and an exact-erf GELU (the form `hubert_tf.activations` builds), ReLU or
others into one oneDNN kernel (`_FusedMatMul`), so the output is written once. Same weights, same
numbers within float rounding; TFLite and ONNX see a plain fully-connected layer.
"""

from __future__ import annotations

import tensorflow as tf


def dense(layer, x, activation=None):
    """`activation(layer(x))` for a built `keras.layers.Dense` with a bias, on x of any rank >= 2.

    Args:
        layer: keras.layers.Dense (its `kernel` [in, out] and `bias` [out] are used; its own activation
            must be linear).
        x: [..., in] tensor in the compute dtype.
        activation: optional elementwise function applied to the [rows, out] product.

    Returns:
        [..., out] tensor.

    Example:

    >>> import keras, numpy as np
    >>> layer = keras.layers.Dense(4)
    >>> x = np.ones((2, 3, 5), "float32")
    >>> np.allclose(dense(layer, x), layer(x), atol=1e-6)
    True
    """
    x = tf.convert_to_tensor(x)
    if not layer.built:
        layer.build(x.shape)
    leading = tf.shape(x)[:-1]
    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), tf.cast(layer.kernel, x.dtype))  # [rows, out]
    y = tf.nn.bias_add(y, tf.cast(layer.bias, y.dtype))
    if activation is not None:
        y = activation(y)
    return tf.reshape(y, tf.concat([leading, [layer.units]], axis=0))
