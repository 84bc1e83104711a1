"""The one label check (every head, the data pipeline, and `fit()`'s error translation use it) and the
CTC feasibility rule (frames an alignment needs)."""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

IGNORE_INDEX = -100

# "<name> must be in [0, N) (<field>) or -100 ..." ; `label_error_message` finds it again in the
# InvalidArgumentError a failed graph-mode check raises.
_MESSAGE = "{name} must be in [0, {num_classes}) ({field}) or -100 {ignored}"
_MESSAGE_RE = re.compile(r"([\w.]+ must be in \[0, \d+\) \(\w+\)[^\]\n]*?)(?:; got)?\](?: \[([^\]]*)\])?")


def check_ids(labels, num_classes: int, field: str, name: str = "labels", ignored: str = "to ignore"):
    """Integer ids must lie in [0, num_classes) or equal -100.

    ValueError eagerly; in a graph an InvalidArgumentError with the same message, which the models'
    `fit`/`evaluate`/`predict` re-raise as ValueError (see `label_error_message`).

    Args:
        labels: int array or tensor, any shape.
        num_classes: int. Exclusive upper bound.
        field: str. The config field giving `num_classes` (named in the message).
        name: str. What the ids are, for the message.
        ignored: str. What -100 means here ("to ignore", "for padding").

    Returns:
        The labels as a tensor (in a graph: with the check attached).

    Example:

    >>> check_ids([[1, 2, -100]], 5, "vocab_size").numpy().tolist()
    [[1, 2, -100]]
    """
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(f"{name} must be integer ids, got dtype {labels.dtype.name}")
    message = _MESSAGE.format(name=name, num_classes=num_classes, field=field, ignored=ignored)
    if tf.executing_eagerly():
        values = labels.numpy()
        bad = values[(values != IGNORE_INDEX) & ((values < 0) | (values >= num_classes))]
        if bad.size:
            raise ValueError(f"{message}; got {sorted(set(bad.tolist()))[:10]}")
        return labels
    valid = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < num_classes))
    bad = tf.boolean_mask(labels, tf.logical_not(valid))  # named in the error message
    check = tf.debugging.Assert(tf.reduce_all(valid), [message + "; got", bad], summarize=10)
    with tf.control_dependencies([check]):
        return tf.identity(labels)


def label_error_message(error: BaseException) -> str | None:
    """The `check_ids` message carried by `error` (a graph-mode InvalidArgumentError), else None."""
    match = _MESSAGE_RE.search(str(error))
    if not match:
        return None
    values = match.group(2)
    return match.group(1) + (f"; got [{', '.join(values.split())}]" if values else "")


def ctc_frames_needed(targets, target_lengths):
    """Frames a CTC alignment of each row needs: one per label plus a blank between equal neighbours.

    Args:
        targets: int [batch, max_length], the labels at the front of each row.
        target_lengths: int [batch].

    Returns:
        int32 [batch].

    Example:

    >>> ctc_frames_needed(np.array([[3, 3, 4]]), np.array([3])).numpy().tolist()
    [4]
    """
    targets = tf.convert_to_tensor(targets)
    target_lengths = tf.cast(target_lengths, tf.int32)
    in_target = tf.sequence_mask(target_lengths, tf.shape(targets)[1])
    repeats = tf.logical_and(in_target[:, 1:], tf.equal(targets[:, 1:], targets[:, :-1]))
    return target_lengths + tf.reduce_sum(tf.cast(repeats, tf.int32), axis=-1)


def ctc_frames_needed_for(ids) -> int:
    """`ctc_frames_needed` of one label sequence (numpy / list), as an int."""
    ids = np.asarray(ids).reshape(1, -1)
    return int(ctc_frames_needed(ids, [ids.shape[1]])[0])
