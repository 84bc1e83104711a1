"""Lengths and masks: sample lengths -> frame lengths -> frame masks, and SpecAugment span masks.

Every mask in the model is built here, from lengths (STYLE: "lengths, not guesses"): the main layer
turns the attention mask into sample lengths once, the conv formula into frame lengths once, and passes
the frame lengths and mask down to the encoder and up to the heads.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def conv_output_lengths(lengths, conv_kernel: Sequence[int], conv_stride: Sequence[int]):
    """Frames produced by the conv feature encoder for `lengths` samples: floor((L - k) / s) + 1 per layer.

    The one place this formula lives. Works on Python ints, numpy arrays and integer tensors. Lengths
    shorter than the receptive field give <= 0.
    """
    for kernel, stride in zip(conv_kernel, conv_stride):
        lengths = (lengths - kernel) // stride + 1
    return lengths


def sample_lengths(input_values, attention_mask=None):
    """[batch] int32 valid samples per row: the attention mask's sum, or the padded length without one."""
    if attention_mask is not None:
        return tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=-1)
    shape = tf.shape(input_values)
    return tf.fill([shape[0]], shape[1])


def frame_lengths(sample_lengths, config, num_frames=None):
    """[batch] int32 valid frames for `sample_lengths` samples, clipped to [0, num_frames] when given."""
    lengths = tf.maximum(conv_output_lengths(tf.cast(sample_lengths, tf.int32), config.conv_kernel,
                                             config.conv_stride), 0)
    return lengths if num_frames is None else tf.minimum(lengths, num_frames)


def lengths_to_mask(lengths, max_length):
    """[batch] lengths -> [batch, max_length] bool mask, True on the first `length` positions."""
    return tf.sequence_mask(lengths, max_length)


def masked_mean(x, mask):
    """Mean of x [batch, frames, dim] over the frames where mask [batch, frames] is True (all frames
    without a mask) -> [batch, dim]. Rows with no valid frame give 0."""
    if mask is None:
        return tf.reduce_mean(x, axis=1)
    weights = tf.cast(mask, x.dtype)[:, :, None]  # [batch, frames, 1]
    return tf.reduce_sum(x * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), tf.cast(1, x.dtype))


def compute_span_mask(
    batch_size,
    sequence_length,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    lengths=None,
    seed=None,
):
    """Random SpecAugment spans, drawn in the graph: [batch, sequence_length] bool.

    The reference's `_compute_mask_indices`, vectorised: per row, `num_spans = max(min_masks,
    int(mask_prob * length / mask_length + eps))` (eps ~ U[0, 1) shared by the batch, capped so the
    spans fit), start positions drawn uniformly without replacement from `[0, length - mask_length]`,
    each start masking `mask_length` frames (spans may overlap; a span running past the end is clipped).

    Args:
        batch_size: int or scalar tensor.
        sequence_length: int or scalar tensor, the padded number of frames.
        mask_prob: float. Fraction of frames to cover (an upper bound because of overlaps).
        mask_length: int. Span length.
        min_masks: int. Minimum number of spans per row.
        lengths: optional [batch] valid lengths (defaults to `sequence_length` for every row).
        seed: optional stateless seed, shape [2] int32/int64; otherwise the global generator is used.
    """
    sequence_length = tf.cast(sequence_length, tf.int32)
    if lengths is None:
        lengths = tf.fill([batch_size], sequence_length)
    lengths = tf.cast(lengths, tf.int32)

    def uniform(shape, salt):
        if seed is None:
            return tf.random.uniform(shape)
        return tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int32) + tf.constant([0, salt]))

    epsilon = uniform([], 0)

    def num_spans(length):
        n = tf.cast(mask_prob * tf.cast(length, tf.float32) / mask_length + epsilon, tf.int32)
        n = tf.maximum(n, min_masks)
        n = tf.where(n * mask_length > sequence_length, sequence_length // mask_length, n)
        return tf.minimum(n, tf.maximum(length - (mask_length - 1), 0))

    spans = num_spans(lengths)  # [batch]
    # Sampling without replacement = the `spans` smallest of i.i.d. uniform scores over valid starts.
    positions = tf.range(sequence_length)[None, :]  # [1, T]
    valid_start = positions < (lengths - (mask_length - 1))[:, None]  # [B, T]
    scores = tf.where(valid_start, uniform(tf.stack([batch_size, sequence_length]), 1), 2.0)
    rank = tf.argsort(tf.argsort(scores, axis=-1), axis=-1)  # rank of each position's score
    starts = tf.logical_and(valid_start, rank < spans[:, None])  # [B, T]
    # A frame is masked when a start lies in (t - mask_length, t]: a windowed count via cumsum.
    counts = tf.cumsum(tf.cast(starts, tf.int32), axis=-1)
    shifted = tf.pad(counts, [[0, 0], [mask_length, 0]])[:, :sequence_length]
    return (counts - shifted) > 0
