"""Zero-mean unit-variance normalisation of raw audio in the graph (the feature extractor's, in TF ops)."""

from __future__ import annotations

import tensorflow as tf

EPSILON = 1e-7  # the feature extractor's (and transformers') variance epsilon


def normalize_audio(audio, attention_mask=None, *, do_normalize: bool = True, padding_value: float = 0.0):
    """Normalises each utterance to zero mean and unit variance over its valid samples.

    The TF twin of `HubertFeatureExtractor`'s normalisation: ``(x - mean) / sqrt(var + 1e-7)`` per row,
    the statistics over the samples where `attention_mask` is 1 (population variance, as numpy's
    `var()`), padded samples set to `padding_value`.

    Args:
        audio: float [batch, samples]. Raw 16 kHz mono audio.
        attention_mask: optional int or bool [batch, samples], 1 on real samples. Defaults to None
            (every sample is valid).
        do_normalize: bool. False only resets the padded samples (the extractor's `do_normalize`).
            Defaults to True.
        padding_value: float. Value written into padded samples. Defaults to 0.0.

    Returns:
        float32 [batch, samples].

    Example:

    >>> import numpy as np
    >>> x = normalize_audio(np.array([[1.0, 3.0, 7.0]], "float32"), np.array([[1, 1, 0]]))
    >>> np.round(x.numpy(), 4).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    audio = tf.cast(audio, tf.float32)
    if attention_mask is None:
        if not do_normalize:
            return audio
        mean, variance = tf.nn.moments(audio, axes=[1], keepdims=True)  # [batch, 1] each
        return (audio - mean) / tf.sqrt(variance + EPSILON)
    weights = tf.cast(attention_mask, tf.float32)  # [batch, samples]
    if do_normalize:
        count = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)  # [batch, 1]
        mean = tf.reduce_sum(audio * weights, axis=1, keepdims=True) / count
        variance = tf.reduce_sum(tf.square(audio - mean) * weights, axis=1, keepdims=True) / count
        audio = (audio - mean) / tf.sqrt(variance + EPSILON)
    return tf.where(weights > 0, audio, tf.cast(padding_value, tf.float32))
