"""Losses with the reference semantics: CTC (as `torch.nn.functional.ctc_loss`)."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from .labels import check_ids, ctc_frames_needed

def check_labels(labels, vocab_size: int, name: str = "labels"):
    """CTC labels: ids in [0, vocab_size) or -100 (padding); see `labels.check_ids`."""
    return check_ids(labels, vocab_size, "vocab_size", name=name, ignored="for padding")


def _compact_targets(labels, keep):
    """Moves the kept labels of each row to the front, in order: [batch, L] -> ([batch, L], lengths)."""
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=-1, stable=True)
    lengths = tf.reduce_sum(tf.cast(keep, tf.int32), axis=-1)
    targets = tf.gather(labels, order, batch_dims=1)
    targets = tf.where(tf.sequence_mask(lengths, tf.shape(labels)[1]), targets, 0)
    return targets, lengths


def ctc_loss(logits, labels, logit_lengths, blank: int = 0, reduction: str = "sum", zero_infinity: bool = False):
    """CTC loss with the semantics of the reference (`HubertForCTC` / `torch.nn.functional.ctc_loss`).

    Args:
        logits: [batch, frames, vocab] (any float dtype; the log-softmax is taken in float32).
        labels: int [batch, max_label_length]; -100 (and the blank id) are padding, anywhere in the row.
        logit_lengths: int [batch], valid frames per row.
        blank: int. The blank id (`pad_token_id`).
        reduction: "sum" (sum over the batch) or "mean" (each loss divided by its target length,
            then averaged over the batch).
        zero_infinity: bool. Infinite losses (targets that cannot be aligned in the frames) and their
            gradients become zero; otherwise they are +inf as in the reference.

    Returns:
        Scalar float32 loss.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)  # [batch, frames, vocab]
    labels = tf.cast(labels, tf.int32)
    keep = tf.logical_and(labels >= 0, labels != blank)
    targets, target_lengths = _compact_targets(labels, keep)
    logit_lengths = tf.cast(logit_lengths, tf.int32)
    infeasible = ctc_frames_needed(targets, target_lengths) > logit_lengths
    # Infeasible rows get an empty target so that nothing non-finite enters the gradient.
    safe_lengths = tf.where(infeasible, 0, target_lengths)
    per_example = tf.nn.ctc_loss(
        labels=targets, logits=log_probs, label_length=safe_lengths, logit_length=logit_lengths,
        logits_time_major=False, blank_index=blank,
    )  # [batch]
    if not zero_infinity and tf.executing_eagerly() and bool(tf.reduce_any(infeasible)):
        warnings.warn(
            f"{int(tf.reduce_sum(tf.cast(infeasible, tf.int32)))} label sequence(s) need more frames than "
            "their audio gives (labels longer than the output frames): their CTC loss is inf. Drop or "
            "shorten these examples, or set config.ctc_zero_infinity=True to zero such losses.",
            RuntimeWarning, stacklevel=2,
        )
    fill = tf.constant(0.0 if zero_infinity else np.inf, tf.float32)
    per_example = tf.where(infeasible, fill, per_example)
    if reduction == "mean":
        per_example = per_example / tf.cast(tf.maximum(target_lengths, 1), tf.float32)
        return tf.reduce_mean(per_example)
    if reduction == "sum":
        return tf.reduce_sum(per_example)
    raise ValueError(f"ctc_loss_reduction must be 'sum' or 'mean', got {reduction!r}")
