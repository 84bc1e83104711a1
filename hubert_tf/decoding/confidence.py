"""Confidence scores in [0, 1] for the words and characters of a CTC transcript.

Definition (one for every decoder: greedy, beam search and forced alignment). A decoder picks a CTC
*path*: one label per frame (a character, the word delimiter or the blank). The confidence of a span of
frames [start, end) is the geometric mean over those frames of the posterior probability of the path's
label:

    confidence = exp(mean_{t in [start, end)} log softmax(logits[t])[path[t]])

For greedy decoding the path label is the argmax, so this is the geometric mean of the max posterior.
Why the geometric mean: it is the path's own probability normalised per frame (exp of its mean
log-likelihood), so it does not depend on how long a word is held, one uncertain frame lowers it a
lot (unlike the arithmetic mean, which hides it), but a single blurred boundary frame does not zero it
(unlike the min). A character's span is its own frames; a word's span runs from its first character's
first frame to its last character's last frame, the blanks between its characters included (they are
part of how the word was read).
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits) -> np.ndarray:
    """Numerically stable log-softmax over the last axis, float32.

    Args:
        logits: float array [..., classes].

    Returns:
        float32 array of the same shape, log-probabilities.

    Example:

    >>> np.exp(log_softmax(np.array([0.0, 0.0]))).round(2).tolist()
    [0.5, 0.5]
    """
    x = np.asarray(logits, np.float32)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def path_log_probs(log_probs, path) -> np.ndarray:
    """log p(path[t] | frame t) for every frame: float64 [frames]."""
    log_probs = np.asarray(log_probs)
    path = np.asarray(path, np.int64)
    if log_probs.ndim != 2 or path.shape != (log_probs.shape[0],):
        raise ValueError(f"expected log_probs [frames, classes] and path [frames], got {log_probs.shape} and "
                         f"{path.shape}")
    return log_probs[np.arange(path.size), path].astype(np.float64)


def span_confidence(frame_log_probs, starts, ends) -> np.ndarray:
    """Geometric-mean confidence of frame spans [start, end) (see the module docstring), vectorised.

    Args:
        frame_log_probs: float [frames], the log posterior of the path label at each frame
            (`path_log_probs`).
        starts, ends: int arrays [spans], frame indices, end exclusive.

    Returns:
        float64 [spans] in [0, 1]; an empty span scores 0.

    Example:

    >>> span_confidence(np.log([0.5, 0.5, 1.0, 0.25]), [0, 2], [2, 4]).round(3).tolist()
    [0.5, 0.5]
    """
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(frame_log_probs, np.float64))])
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    if starts.size == 0:
        return np.zeros(0)
    if (starts < 0).any() or (ends > cumulative.size - 1).any() or (ends < starts).any():
        raise ValueError(f"spans must lie in [0, {cumulative.size - 1}] with start <= end")
    lengths = ends - starts
    mean = (cumulative[ends] - cumulative[starts]) / np.maximum(lengths, 1)
    return np.where(lengths > 0, np.clip(np.exp(mean), 0.0, 1.0), 0.0)


def add_confidence(offsets, frame_log_probs, start_key="start_offset", end_key="end_offset"):
    """Adds a "confidence" entry to every offset dict (frame spans), in place; returns `offsets`."""
    if offsets:
        scores = span_confidence(frame_log_probs, [o[start_key] for o in offsets], [o[end_key] for o in offsets])
        for offset, score in zip(offsets, scores):
            offset["confidence"] = round(float(score), 4)
    return offsets


def greedy_confidence(logits):
    """(path, frame_log_probs) of greedy decoding: the argmax ids [frames] and their log posteriors.

    Example:

    >>> path, lp = greedy_confidence(np.log([[0.9, 0.1], [0.3, 0.7]]))
    >>> path.tolist(), np.exp(lp).round(2).tolist()
    ([0, 1], [0.9, 0.7])
    """
    log_probs = log_softmax(logits)
    path = log_probs.argmax(-1)
    return path, path_log_probs(log_probs, path)
