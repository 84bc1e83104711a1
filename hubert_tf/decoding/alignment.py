"""CTC forced alignment: the most likely CTC path that reads exactly a given transcript (Viterbi).

Semantics follow `torchaudio.functional.forced_align`: the transcript's token ids are expanded to the
CTC states ``blank, t1, blank, t2, ..., tN, blank``; a path starts in the first blank or t1, ends in
tN or the last blank, and at each frame stays in its state, moves to the next one, or skips a blank
between two *different* tokens. The answer is one label per frame (the blank or a token) plus, for
every token, the frames it covers.

Memory stays linear in the number of frames: the Viterbi keeps scores and back-pointers only for a
window ("band") of `band` consecutive CTC states per frame, int8 pointers, so an hour of audio
(180 000 frames) with the default band costs 180000 x 2048 bytes = 370 MB at most, and much less for
short files. The window follows the best partial path (it starts a third of a band behind the best
state of the frame before, never moves back, and is pushed forward near the end so the last token
stays reachable), so it tracks speech whose rate changes (long pauses, fast passages) instead of
assuming a uniform rate. When the whole transcript fits in the band (2 * tokens + 1 <= band, e.g. up
to 1000 characters by default) the band is everything and the result is the exact Viterbi path; beyond
that it is exact whenever the best path never strays more than the band from the best partial
hypothesis, which the tests check on long crafted recordings.

The loop over frames makes O(frames) numpy calls, each vectorised over the
band's states; the back-trace is a scalar loop of one step per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BAND = 2048  # CTC states kept per frame (about +-1000 characters of drift from a uniform rate)


@dataclass
class Alignment:
    """A forced alignment of token ids to frames.

    Fields:
        path: int64 [frames]. The label at each frame: a token id or the blank id.
        token_index: int64 [frames]. Which transcript token each frame reads (-1 on blank frames).
        starts, ends: int64 [tokens]. First frame and one past the last frame of every token.
        score: float. Log-probability of the path (sum over frames).
    """

    path: np.ndarray
    token_index: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    score: float


def min_frames(token_ids) -> int:
    """Frames a CTC path needs to read `token_ids`: one per token plus a blank between repeats."""
    ids = np.asarray(token_ids)
    return int(ids.size + (np.count_nonzero(ids[1:] == ids[:-1]) if ids.size > 1 else 0))


def forced_align(log_probs, token_ids, blank: int = 0, band: int | None = DEFAULT_BAND) -> Alignment:
    """Viterbi CTC alignment of `token_ids` to the frames of `log_probs`.

    Args:
        log_probs: float [frames, classes], log-probabilities (e.g. `log_softmax(logits)`).
        token_ids: int sequence [tokens], the transcript's ids (the blank must not be among them).
        blank: int. The blank id (the tokenizer's pad id). Defaults to 0.
        band: int or None, >= 4. States kept per frame (see the module docstring); None = all (exact,
            memory frames x states). The result is exact whenever 2 * tokens + 1 <= band. Defaults to 2048.

    Returns:
        An `Alignment`.

    Raises:
        ValueError: bad shapes or ids, the blank in the transcript, fewer frames than the transcript
            needs, or no path inside the band (pass a larger `band`).

    Example:

    >>> lp = np.log(np.array([[.1, .8, .1], [.8, .1, .1], [.1, .1, .8], [.8, .1, .1]]))
    >>> a = forced_align(lp, [1, 2], blank=0)
    >>> a.path.tolist(), a.starts.tolist(), a.ends.tolist()
    ([1, 0, 2, 0], [0, 2], [1, 3])
    """
    log_probs = np.asarray(log_probs, np.float32)
    if log_probs.ndim != 2 or log_probs.shape[0] == 0:
        raise ValueError(f"log_probs must be [frames, classes] with frames > 0, got shape {log_probs.shape}")
    if not np.isfinite(log_probs).all() and np.isnan(log_probs).any():
        raise ValueError("log_probs contain NaN")
    frames, classes = log_probs.shape
    ids = np.asarray(token_ids, np.int64).reshape(-1)
    if ids.size == 0:
        raise ValueError("the transcript is empty: nothing to align")
    if not 0 <= blank < classes:
        raise ValueError(f"blank={blank} is outside the {classes} classes")
    bad = ids[(ids < 0) | (ids >= classes)]
    if bad.size:
        raise ValueError(f"token ids {sorted(set(bad.tolist()))[:10]} are outside the {classes} classes")
    if (ids == blank).any():
        raise ValueError(f"the transcript contains the blank id {blank}")
    needed = min_frames(ids)
    if needed > frames:
        raise ValueError(f"the transcript needs at least {needed} frames but the audio gives {frames}: it is too "
                         f"long for this audio")

    states = 2 * ids.size + 1
    labels = np.full(states, blank, np.int64)
    labels[1::2] = ids
    # A skip from s - 2 to s is allowed into a token that differs from the token two states back.
    can_skip = np.zeros(states, bool)
    can_skip[3::2] = ids[1:] != ids[:-1]
    can_skip[1] = False
    if band is not None and (isinstance(band, bool) or not isinstance(band, (int, np.integer)) or band < 4):
        raise ValueError(f"band must be an int >= 4 or None, got {band!r}")
    width = states if band is None else int(min(states, band))
    starts = np.zeros(frames, np.int64)  # first state of the band at each frame
    neg = np.float32(-np.inf)
    pointers = np.zeros((frames, width), np.int8)  # 0 = stay, 1 = from s-1, 2 = from s-2
    alpha = np.full(width, neg, np.float32)
    emit = log_probs[0, labels[:width]]
    alpha[:2] = emit[:2]
    for t in range(1, frames):
        if width < states:
            # Follow the best partial path; stay where the last token can still be reached in time.
            ahead = starts[t - 1] + int(np.argmax(alpha)) - width // 3
            lowest = max(starts[t - 1], states - width - 2 * (frames - 1 - t))
            starts[t] = min(max(ahead, lowest), states - width)
        b, shift = starts[t], starts[t] - starts[t - 1]
        padded = np.concatenate(([neg, neg], alpha, np.full(shift, neg, np.float32)))
        stay = padded[2 + shift:2 + shift + width]
        one = padded[1 + shift:1 + shift + width]
        two = np.where(can_skip[b:b + width], padded[shift:shift + width], neg)
        best = np.maximum(np.maximum(stay, one), two)
        # Ties go to staying, then to s - 1 (as the reference loops: first maximum wins).
        pointers[t] = np.where(stay >= best, 0, np.where(one >= best, 1, 2))
        alpha = best + log_probs[t, labels[b:b + width]]
    b = starts[-1]
    ends_at = [s for s in (states - 1, states - 2) if b <= s < b + width]
    final = [alpha[s - b] for s in ends_at]
    if not final or not np.isfinite(max(final)):
        hint = " (pass a larger band=)" if width < states else ""
        raise ValueError(f"no CTC path reads the transcript in these {frames} frames{hint}")
    state = ends_at[int(np.argmax(final))]
    score = float(max(final))
    state_path = np.empty(frames, np.int64)
    for t in range(frames - 1, -1, -1):
        state_path[t] = state
        state -= int(pointers[t, state - starts[t]])
    if state_path[0] > 1:
        raise ValueError(f"no CTC path reads the transcript in these {frames} frames (pass a larger band=)")
    token_index = np.where(state_path % 2 == 1, state_path // 2, -1)
    return Alignment(path=labels[state_path], token_index=token_index, starts=_first(token_index, ids.size),
                     ends=_last(token_index, ids.size) + 1, score=score)


def _first(token_index, n):
    frames = np.arange(token_index.size)
    on = token_index >= 0
    out = np.full(n, token_index.size, np.int64)
    np.minimum.at(out, token_index[on], frames[on])
    return out


def _last(token_index, n):
    frames = np.arange(token_index.size)
    on = token_index >= 0
    out = np.full(n, -1, np.int64)
    np.maximum.at(out, token_index[on], frames[on])
    return out


def transcript_to_ids(transcript: str, tokenizer):
    """(words, ids, word_of_token) of a transcript for `forced_align`.

    Words are split on whitespace; each character maps to its vocabulary id, trying it as written, then
    upper-, then lower-cased (HuBERT vocabularies are upper case); the word delimiter id goes between
    words when the vocabulary has one. `word_of_token` [tokens] is the word index of each id (-1 for
    delimiters).

    Raises:
        TypeError / ValueError: not a str, empty, or characters outside the vocabulary (named).
    """
    if not isinstance(transcript, str):
        raise TypeError(f"transcript must be a str, got {type(transcript).__name__}")
    words = transcript.split()
    if not words:
        raise ValueError("the transcript is empty: nothing to align")
    vocab = tokenizer.encoder
    delimiter = vocab.get(tokenizer.word_delimiter_token)
    ids, word_of_token, missing = [], [], []
    for w, word in enumerate(words):
        if w and delimiter is not None:
            ids.append(delimiter)
            word_of_token.append(-1)
        for ch in word:
            index = next((vocab[c] for c in (ch, ch.upper(), ch.lower()) if c in vocab), None)
            if index is None:
                if ch not in missing:
                    missing.append(ch)
                continue
            ids.append(index)
            word_of_token.append(w)
    if missing:
        raise ValueError(f"the transcript has characters outside the vocabulary: {''.join(missing)!r} "
                         f"({', '.join(repr(c) for c in missing[:20])})")
    return words, np.asarray(ids, np.int64), np.asarray(word_of_token, np.int64)


def align_text(logits, transcript: str, tokenizer, seconds_per_frame: float, band: int | None = DEFAULT_BAND):
    """Word and character time spans of `transcript` in the frames of one recording's `logits`.

    Args:
        logits: float [frames, classes], the CTC model's logits (stitched chunks are fine).
        transcript: str. What is said; whitespace separates words; case is matched to the vocabulary.
        tokenizer: a `HubertCTCTokenizer`.
        seconds_per_frame: float. Model frame step in seconds (320 / 16000 for HuBERT).
        band: as `forced_align`.

    Returns:
        {"text": transcript words joined by spaces, "score": path log-probability,
        "words": [{"text", "timestamp": (start_s, end_s), "confidence"}],
        "chars": [{"text", "timestamp", "confidence"}]} (chars without word delimiters). Confidence
        is the geometric mean of the path's frame posteriors over the span (see
        `hubert_tf.decoding.confidence`).

    Example:

    >>> from hubert_tf.processing import HubertCTCTokenizer
    >>> tok = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
    >>> logits = np.log(np.eye(5)[[3, 0, 2, 4, 4]] * 0.9 + 0.02)
    >>> [w["timestamp"] for w in align_text(logits, "a b", tok, 0.02)["words"]]
    [(0.0, 0.02), (0.06, 0.1)]
    """
    from .confidence import log_softmax, path_log_probs, span_confidence

    words, ids, word_of_token = transcript_to_ids(transcript, tokenizer)
    log_probs = log_softmax(logits)
    blank = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    alignment = forced_align(log_probs, ids, blank=blank, band=band)
    frame_lp = path_log_probs(log_probs, alignment.path)
    is_char = word_of_token >= 0
    char_starts, char_ends = alignment.starts[is_char], alignment.ends[is_char]
    char_words = word_of_token[is_char]
    word_starts = np.full(len(words), 0, np.int64)
    word_ends = np.full(len(words), 0, np.int64)
    # A word runs from its first character's first frame to its last character's last frame.
    for w in range(len(words)):
        mine = char_words == w
        word_starts[w], word_ends[w] = char_starts[mine].min(), char_ends[mine].max()

    def spans(texts, starts, ends):
        scores = span_confidence(frame_lp, starts, ends)
        return [{"text": text, "timestamp": (round(float(s) * seconds_per_frame, 3),
                                             round(float(e) * seconds_per_frame, 3)),
                 "confidence": round(float(c), 4)} for text, s, e, c in zip(texts, starts, ends, scores)]

    chars = [ch for word in words for ch in word]
    return {"text": " ".join(words), "score": alignment.score,
            "words": spans(words, word_starts, word_ends), "chars": spans(chars, char_starts, char_ends)}
