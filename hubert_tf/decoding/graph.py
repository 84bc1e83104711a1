"""CTC beam search as TF ops (no language model), for the SavedModel's `transcribe_beam` signature:
servers that cannot run Python get the top-k label sequences, their texts and log-probabilities.

`tf.nn.ctc_beam_search_decoder` takes the *last* class as the blank; HuBERT's blank is the pad id
(0), so the classes are permuted to put it last and the decoded ids mapped back. The texts come from
`hubert_tf.serving.GreedyCTCDecoder` (the one definition of the vocabulary's text rules): each label
sequence is read as a CTC path with a blank between labels, which greedy decoding turns into exactly
that sequence's text.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class BeamCTCDecoder:
    """Top-k CTC beam search in the graph.

    Args:
        tokenizer: HubertCTCTokenizer (its pad token is the blank).
        num_classes: int. The logits' last axis (the model's `vocab_size`).
        beam_width: int. Beams kept per frame. Defaults to 16.
        top_paths: int. Hypotheses returned per row (k). Defaults to 4.

    Call args:
        logits: float [batch, frames, classes]; frame_lengths: int [batch].

    Returns:
        {"text": string [batch, k], "token_ids": int32 [batch, k, labels] (collapsed labels, the pad id
        after each row's `label_lengths`), "label_lengths": int32 [batch, k], "log_probs": float32
        [batch, k] (the beam's CTC log-probability, best first)}.

    Example:

    >>> from hubert_tf.processing import HubertCTCTokenizer
    >>> tok = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
    >>> logits = np.log(np.eye(5, dtype="float32")[[[3, 3, 0, 3, 2, 4]]] * 0.9 + 0.02)
    >>> out = BeamCTCDecoder(tok, 5, top_paths=2)(logits, [6])
    >>> out["text"].numpy()[0, 0]
    b'AA B'
    """

    def __init__(self, tokenizer, num_classes: int, beam_width: int = 16, top_paths: int = 4):
        from hubert_tf.serving.ctc import GreedyCTCDecoder

        for name, value in (("beam_width", beam_width), ("top_paths", top_paths)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if top_paths > beam_width:
            raise ValueError(f"top_paths={top_paths} cannot exceed beam_width={beam_width}")
        self.greedy = GreedyCTCDecoder(tokenizer, num_classes)
        self.num_classes = int(num_classes)
        self.blank = int(self.greedy.pad_id)
        # Class order with the blank last; `order[new_id]` is the original id.
        self.order = np.array([i for i in range(self.num_classes) if i != self.blank] + [self.blank], np.int32)
        self.beam_width, self.top_paths = int(beam_width), int(top_paths)

    def __call__(self, logits, frame_lengths):
        logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
        batch, frames = tf.shape(logits)[0], tf.shape(logits)[1]
        frame_lengths = tf.clip_by_value(tf.cast(frame_lengths, tf.int32), 0, frames)
        permuted = tf.transpose(tf.gather(logits, self.order, axis=-1), [1, 0, 2])  # time major
        decoded, log_probs = tf.nn.ctc_beam_search_decoder(permuted, frame_lengths, beam_width=self.beam_width,
                                                           top_paths=self.top_paths)
        k = self.top_paths
        dense = [tf.sparse.to_dense(d, default_value=-1) for d in decoded]  # k x [batch, len_i]
        width = tf.reduce_max(tf.stack([tf.shape(d)[1] for d in dense]))
        ids = tf.stack([tf.pad(d, [[0, 0], [0, width - tf.shape(d)[1]]], constant_values=-1) for d in dense], 1)
        valid = ids >= 0  # [batch, k, width]
        original = tf.where(valid, tf.gather(self.order, tf.maximum(ids, 0)), self.blank)
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), -1)
        # Labels with a blank after each: greedy decoding of that path is the label sequence's text.
        flat = tf.reshape(original, [batch * k, width])
        path = tf.reshape(tf.stack([flat, tf.fill(tf.shape(flat), self.blank)], -1), [batch * k, 2 * width])
        text, _ = self.greedy(tf.one_hot(path, self.num_classes), tf.fill([batch * k], 2 * width))
        return {"text": tf.reshape(text, [batch, k]), "token_ids": original, "label_lengths": lengths,
                "log_probs": tf.cast(log_probs, tf.float32)}
