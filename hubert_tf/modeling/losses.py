"""Losses with the reference semantics: CTC (as `torch.nn.functional.ctc_loss`) and label checks."""

from __future__ import annotations

import re
import warnings

import numpy as np
import tensorflow as tf

IGNORE_INDEX = -100

# The label-check message; `label_error_message` finds it (and any "<name> must be in [0, N) (<field>) ..."
# assertion of the other heads) in the InvalidArgumentError of a graph.
_LABEL_MESSAGE = "{name} must be in [0, {vocab_size}) (vocab_size) or -100 for padding"
_LABEL_MESSAGE_RE = re.compile(r"([\w.]+ must be in \[0, \d+\) \(\w+\)[^\]\n]*?)(?:; got)?\](?: \[([^\]]*)\])?")


def label_error_message(error: BaseException) -> str | None:
    """The `check_labels` message carried by `error` (a graph-mode InvalidArgumentError), else None."""
    match = _LABEL_MESSAGE_RE.search(str(error))
    if not match:
        return None
    values = match.group(2)
    return match.group(1) + (f"; got [{', '.join(values.split())}]" if values else "")


def check_labels(labels, vocab_size: int, name: str = "labels"):
    """Labels must lie in [0, vocab_size) or equal -100 (padding). ValueError eagerly; in a graph an
    InvalidArgumentError carrying the same message (`fit`/`evaluate`/`predict` re-raise it as ValueError,
    see `label_error_message`)."""
    message = _LABEL_MESSAGE.format(name=name, vocab_size=vocab_size)
    if tf.executing_eagerly():
        values = np.asarray(labels)
        bad = values[(values != IGNORE_INDEX) & ((values < 0) | (values >= vocab_size))]
        if bad.size:
            raise ValueError(f"{message}; got {sorted(set(bad.tolist()))[:10]}")
        return tf.convert_to_tensor(labels)
    labels = tf.convert_to_tensor(labels)
    valid = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < vocab_size))
    bad = tf.boolean_mask(labels, tf.logical_not(valid))  # named in the error message
    check = tf.debugging.Assert(tf.reduce_all(valid), [message + "; got", bad], summarize=10)
    with tf.control_dependencies([check]):
        return tf.identity(labels)


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
    # An alignment needs one frame per label plus one blank between repeated labels.
    in_target = tf.sequence_mask(target_lengths, tf.shape(targets)[1])
    repeats = tf.logical_and(in_target[:, 1:], tf.equal(targets[:, 1:], targets[:, :-1]))
    needed = target_lengths + tf.reduce_sum(tf.cast(repeats, tf.int32), axis=-1)
    infeasible = needed > logit_lengths
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
