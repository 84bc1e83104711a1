"""Greedy CTC decoding as TF ops: logits -> text, the same text `HubertCTCTokenizer.batch_decode` gives for
the argmax ids, with the vocabulary baked into the graph as a constant string table."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_RE2_SPECIAL = set(r"\.^$|?*+()[]{}")


def _re2_literal(text: str) -> str:
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


class GreedyCTCDecoder:
    """Best-path CTC decoding in the graph, the text of `tokenizer.batch_decode(argmax(logits))`.

    Per row: argmax over the vocabulary; the first `frame_lengths` frames kept; ids -> tokens (ids the
    tokenizer does not know -> its `unk_token`); with `skip_special_tokens` the special tokens but the
    word delimiter dropped (before merging, as the tokenizer does); repeated tokens merged; the pad token
    (the CTC blank) dropped; the word delimiter ("|") -> `replace_word_delimiter_char` (" "); tokens
    joined and stripped; lower-cased if `do_lower_case`; spaces before punctuation removed if
    `clean_up_tokenization_spaces`. The per-id tables come from `tokenizer.ctc_decoding_table` (the one
    definition of these rules), built once at construction.

    Args:
        tokenizer: HubertCTCTokenizer.
        num_classes: int. Size of the logits' last axis (the model's `vocab_size`).
        skip_special_tokens: bool. As `tokenizer.decode(skip_special_tokens=...)`. Note that the tokenizer
            (like transformers) drops the blank *before* merging repeats in that mode, so "LL" separated
            by a blank becomes "L"; keep False (the default, as transformers' CTC pipeline) for correct
            text. Defaults to False.

    Call args:
        logits: float [batch, frames, num_classes].
        frame_lengths: int [batch] valid frames per row.

    Returns:
        (text string [batch], token_ids int32 [batch, frames]: the argmax ids, the pad id on padded
        frames, so `tokenizer.batch_decode(token_ids)` gives `text`).

    Example:

    >>> import numpy as np
    >>> from hubert_tf.processing import HubertCTCTokenizer
    >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
    >>> logits = np.eye(5, dtype="float32")[[[3, 3, 0, 3, 2, 4, 0]]]  # one-hot [1, 7, 5]
    >>> text, ids = GreedyCTCDecoder(tokenizer, 5)(logits, [7])
    >>> text.numpy().tolist()
    [b'AA B']
    """

    def __init__(self, tokenizer, num_classes: int, skip_special_tokens: bool = False):
        # Every rule (specials, blank, delimiter, merging, clean-up pairs) comes from the tokenizer's one
        # definition; this class only turns the table into graph ops.
        table = tokenizer.ctc_decoding_table(num_classes, skip_special_tokens=skip_special_tokens)
        self.table = table
        self.canonical_ids = table.merge_ids
        self.kept = ~table.dropped
        self.blank = table.blank
        self.pieces = np.array(table.pieces, object)
        self.pad_id = table.pad_id
        self.num_classes = int(num_classes)
        self.skip_special_tokens = bool(skip_special_tokens)
        self.do_lower_case = table.lower_case
        self.clean_up = tuple((_re2_literal(before), after) for before, after in table.clean_up)

    def __call__(self, logits, frame_lengths):
        logits = tf.convert_to_tensor(logits)
        ids = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [batch, frames]
        frames = tf.shape(ids)[1]
        frame_lengths = tf.clip_by_value(tf.cast(frame_lengths, tf.int32), 0, frames)  # [batch]
        token_ids = tf.where(tf.sequence_mask(frame_lengths, frames), ids, self.pad_id)

        sequences = tf.RaggedTensor.from_tensor(tf.gather(self.canonical_ids, ids), lengths=frame_lengths)
        if self.skip_special_tokens:
            sequences = tf.ragged.boolean_mask(sequences, tf.gather(self.kept, sequences))
        flat = sequences.flat_values  # [tokens]
        # A token starts a run when it opens its row or differs from the token before it.
        position_in_row = tf.range(tf.size(flat, out_type=tf.int64)) - tf.gather(
            sequences.row_starts(), sequences.value_rowids()
        )
        starts_run = tf.logical_or(position_in_row == 0, tf.not_equal(flat, tf.roll(flat, shift=1, axis=0)))
        keep = tf.logical_and(starts_run, tf.logical_not(tf.gather(self.blank, flat)))
        sequences = tf.ragged.boolean_mask(sequences, sequences.with_flat_values(keep))
        pieces = sequences.with_flat_values(tf.gather(tf.constant(self.pieces, tf.string), sequences.flat_values))
        text = tf.strings.strip(tf.strings.reduce_join(pieces, axis=1))  # [batch]
        if self.do_lower_case:
            text = tf.strings.lower(text, encoding="utf-8")
        for pattern, after in self.clean_up:
            text = tf.strings.regex_replace(text, pattern, after)
        return text, token_ids
