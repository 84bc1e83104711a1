"""Zero-mean unit-variance normalisation of raw audio: the one definition, in numpy and in graph ops.

    normalised = (x - mean) / sqrt(var + EPSILON)

per utterance, over its valid samples only (population variance, as numpy's `var()`), padded samples
set to `padding_value`. `HubertFeatureExtractor`, the pipelines, the exported serving graphs and the
feature encoder's exact-padding statistics all use this module, so they agree on every sample.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # the feature extractor's (and transformers') variance epsilon
_BLOCK = 1 << 18  # samples per block when accumulating statistics (no float64 copy of long audio)


def moments(audio: np.ndarray) -> tuple[float, float]:
    """(mean, population variance) of a 1-D array, accumulated in float64 block by block."""
    audio = np.asarray(audio)
    count = max(audio.size, 1)
    mean = sum(float(audio[i:i + _BLOCK].sum(dtype=np.float64)) for i in range(0, audio.size, _BLOCK)) / count
    variance = sum(float(np.square(audio[i:i + _BLOCK] - mean, dtype=np.float64).sum())
                   for i in range(0, audio.size, _BLOCK)) / count
    return mean, variance


def all_finite(audio: np.ndarray) -> bool:
    """True when every sample is finite (checked block by block: no full-size boolean temporary)."""
    audio = np.asarray(audio).reshape(-1)
    return all(bool(np.isfinite(audio[i:i + _BLOCK]).all()) for i in range(0, audio.size, _BLOCK))


def normalize(audio: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """One utterance [samples] -> float32 with zero mean and unit variance.

    Args:
        audio: 1-D array of valid samples.
        inplace: reuse `audio`'s memory when it is already float32 (for arrays the caller owns).

    Example:

    >>> normalize(np.array([1.0, 3.0], np.float32)).round(4).tolist()
    [-1.0, 1.0]
    """
    audio = np.asarray(audio)
    mean, variance = moments(audio)
    out = audio if (inplace and audio.dtype == np.float32) else audio.astype(np.float32, copy=True)
    out -= np.float32(mean)
    out *= np.float32(1.0 / np.sqrt(variance + EPSILON))
    return out


def normalize_audio(audio, attention_mask=None, *, lengths=None, do_normalize: bool = True,
                    padding_value: float = 0.0):
    """The graph version: each row of a batch normalised over its valid samples.

    Args:
        audio: float [batch, samples]. Raw 16 kHz mono audio.
        attention_mask: optional int or bool [batch, samples], 1 on real samples.
        lengths: optional int [batch] valid samples per row (right padding), instead of a mask.
            Without either, every sample is valid.
        do_normalize: bool. False only resets the padded samples (the extractor's `do_normalize`).
        padding_value: float. Value written into padded samples.

    Returns:
        float32 [batch, samples].

    Example:

    >>> x = normalize_audio(np.array([[1.0, 3.0, 7.0]], "float32"), lengths=np.array([2]))
    >>> np.round(x.numpy(), 4).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    import tensorflow as tf

    audio = tf.cast(audio, tf.float32)
    if attention_mask is None and lengths is None:
        if not do_normalize:
            return audio
        mean, variance = tf.nn.moments(audio, axes=[1], keepdims=True)  # [batch, 1] each
        return (audio - mean) * tf.math.rsqrt(variance + EPSILON)
    if attention_mask is None:
        attention_mask = tf.sequence_mask(lengths, tf.shape(audio)[1])
    weights = tf.cast(attention_mask, tf.float32)  # [batch, samples]
    if do_normalize:
        count = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)  # [batch, 1]
        mean = tf.reduce_sum(audio * weights, axis=1, keepdims=True) / count
        variance = tf.reduce_sum(tf.square(audio - mean) * weights, axis=1, keepdims=True) / count
        audio = (audio - mean) * tf.math.rsqrt(variance + EPSILON)
    return tf.where(weights > 0, audio, tf.cast(padding_value, tf.float32))
