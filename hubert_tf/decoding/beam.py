"""CTC beam search with a KenLM n-gram language model and hotwords (flashlight-text), optional extra.

`pip install "hubert_tf[lm]"` installs flashlight-text: manylinux / macOS wheels with KenLM built in
(nothing to compile), and no numpy pin. (pyctcdecode, transformers' choice, was tried too: it pins
numpy < 2, which TensorFlow 2.21 cannot run with, and needs the `kenlm` package built from source.)

The search is flashlight's lexicon decoder: words come from the unigram list (plus the hotwords),
spelled with the CTC vocabulary (case-insensitively: "cat" is spelled C A T in an upper-case
vocabulary) and ended by the word delimiter "|"; the score of a hypothesis is

    acoustic log-probability + alpha * ln(10) * LM log10-probability + beta * words
    + hotword_weight * hotwords

which is pyctcdecode's (and so transformers' `Wav2Vec2ProcessorWithLM`'s) meaning of `alpha` and `beta`,
so an `attrs.json` gives the same weighting here.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .confidence import add_confidence, log_softmax, path_log_probs

_NEVER = -1e4  # log-probability of a token the search must not take (finite: flashlight adds scores)
INSTALL_HINT = 'LM beam search needs flashlight-text: pip install "hubert_tf[lm]"'
LM_SUFFIXES = (".arpa", ".bin", ".binary", ".klm")


def _flashlight():
    try:
        from flashlight.lib.text import decoder, dictionary
    except ImportError as e:  # the optional extra is missing
        raise ImportError(INSTALL_HINT) from e
    return decoder, dictionary


@dataclass
class Beam:
    """One hypothesis of `BeamSearchDecoderWithLM.decode_beams`.

    Fields:
        text: str. The transcript (the tokenizer's decoding of `path`).
        path: int64 [frames]. The CTC label of every frame (blanks and repeats included).
        score: float. Total score (acoustic + weighted LM + word and hotword bonuses).
        logit_score: float. Acoustic log-probability of the path.
        lm_score: float. The weighted language-model part of `score` (with the word bonuses).
        word_offsets: list of {"word", "start_offset", "end_offset", "confidence"} (frames, end exclusive).
    """

    text: str
    path: np.ndarray
    score: float
    logit_score: float
    lm_score: float
    word_offsets: list = field(default_factory=list)


def _words_of_arpa(path):
    """The unigrams of an ARPA file (used when no unigrams.txt is given)."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif line.startswith("\\"):
                if in_unigrams:
                    break
            elif in_unigrams and line:
                parts = line.split("\t")
                if len(parts) >= 2:
                    words.append(parts[1])
    return words


class BeamSearchDecoderWithLM:
    """Beam search over CTC logits with a KenLM language model, hotwords and n-best lists.

    Args:
        tokenizer: a `HubertCTCTokenizer` (its vocabulary spells the words; its pad token is the blank,
            its word delimiter ends words).
        kenlm_model_path: str. A KenLM `.arpa` or binary (`.bin`) file.
        unigrams: list of str. The words the search may produce; defaults to the ARPA's unigrams (a
            binary LM needs them given, as `language_model/unigrams.txt` does).
        alpha: float. LM weight (pyctcdecode's meaning). Defaults to 0.5.
        beta: float. Bonus per word. Defaults to 1.5.
        unk_score_offset: float. Score of a word outside the unigrams. Defaults to -10.0.
        score_boundary: bool. Score sentence start / end (`<s>`, `</s>`); kept for the attrs.json round
            trip: flashlight always scores them. Defaults to True.
        beam_width: int. Hypotheses kept per frame. Defaults to 100.
        beam_prune_logp: float. Hypotheses further than this below the best are dropped. Defaults to -10.
        token_min_logp: float. Tokens below this log-probability are not expanded. Defaults to -5.

    Example (needs the `lm` extra):

    >>> decoder = BeamSearchDecoderWithLM(tokenizer, "lm.arpa", alpha=0.5, beta=1.0)  # doctest: +SKIP
    >>> decoder.decode(logits, hotwords=["hubert"])  # doctest: +SKIP
    'HELLO HUBERT'
    """

    def __init__(self, tokenizer, kenlm_model_path, unigrams=None, alpha=0.5, beta=1.5, unk_score_offset=-10.0,
                 score_boundary=True, beam_width=100, beam_prune_logp=-10.0, token_min_logp=-5.0):
        self._fl, self._dict = _flashlight()
        path = os.fspath(kenlm_model_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such KenLM file")
        for name, value in (("alpha", alpha), ("beta", beta), ("unk_score_offset", unk_score_offset),
                            ("beam_prune_logp", beam_prune_logp), ("token_min_logp", token_min_logp)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        self.beam_width = self._check_width(beam_width)
        if unigrams is None:
            if path.endswith(".arpa"):
                unigrams = _words_of_arpa(path)
            else:
                raise ValueError(f"{path} is a binary KenLM file: pass unigrams= (language_model/unigrams.txt)")
        self.tokenizer = tokenizer
        self.kenlm_model_path = path
        self.alpha, self.beta, self.unk_score_offset = float(alpha), float(beta), float(unk_score_offset)
        self.score_boundary = bool(score_boundary)
        self.beam_prune_logp, self.token_min_logp = float(beam_prune_logp), float(token_min_logp)
        self.blank = tokenizer.pad_token_id
        self.delimiter = tokenizer.encoder.get(tokenizer.word_delimiter_token)
        if self.blank is None or self.delimiter is None:
            raise ValueError("the tokenizer needs a pad token (the blank) and a word delimiter for LM decoding")
        specials = {"<s>", "</s>", "<unk>"}
        self.unigrams = [w for w in dict.fromkeys(unigrams) if w not in specials and self._spell(w) is not None]
        if not self.unigrams:
            raise ValueError(f"none of the {len(unigrams)} unigrams can be spelled with the vocabulary")
        self._cache = {}  # hotwords -> (decoder pieces)

    @staticmethod
    def _check_width(beam_width):
        if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
            raise ValueError(f"beam_width must be a positive int, got {beam_width!r}")
        return int(beam_width)

    def _spell(self, word):
        """Token ids of `word` + the delimiter, matching case to the vocabulary; None if a char is missing."""
        vocab = self.tokenizer.encoder
        ids = []
        for ch in word:
            index = next((vocab[c] for c in (ch, ch.upper(), ch.lower()) if c in vocab), None)
            if index is None:
                return None
            ids.append(index)
        return ids + [self.delimiter]

    def _build(self, hotwords, hotword_weight):
        """(decoder, lm) for one set of hotwords (cached: building the trie is the slow part)."""
        key = (tuple(hotwords), float(hotword_weight), self.beam_width)
        if key in self._cache:
            return self._cache[key]
        fl = self._fl
        bad = [w for w in hotwords if self._spell(w) is None]
        if bad:
            raise ValueError(f"hotwords {bad} have characters outside the vocabulary")
        words = self.unigrams + [w for w in hotwords if w not in self.unigrams]
        word_dict = self._dict.create_word_dict({w: [[w]] for w in ["<unk>"] + words})
        try:
            from flashlight.lib.text.decoder.kenlm import KenLM
        except ImportError:  # flashlight-text < 0.0.7
            KenLM = fl.KenLM
        kenlm = KenLM(self.kenlm_model_path, word_dict)
        hot_ids = {word_dict.get_index(w) for w in hotwords}
        lm = kenlm
        if hot_ids:
            # Python callbacks per LM query: hotwords cost speed (see the README's numbers).
            if not self.alpha:
                raise ValueError("hotwords need alpha > 0 (their bonus goes through the LM score)")
            lm = _hotword_lm_class()(kenlm, hot_ids, hotword_weight / (self.alpha * math.log(10)))
        trie = fl.Trie(self.tokenizer.vocab_size if hasattr(self.tokenizer, "vocab_size") else len(self.tokenizer),
                       self.delimiter)
        start = lm.start(False)
        for w in words:
            index = word_dict.get_index(w)
            _, score = lm.score(start, index)
            trie.insert(self._spell(w), index, score)
        trie.smear(fl.SmearingMode.MAX)
        options = fl.LexiconDecoderOptions(
            beam_size=self.beam_width, beam_size_token=self.tokenizer.vocab_size, beam_threshold=-self.beam_prune_logp,
            lm_weight=self.alpha * math.log(10), word_score=self.beta, unk_score=self.unk_score_offset,
            sil_score=0.0, log_add=False, criterion_type=fl.CriterionType.CTC)
        decoder = fl.LexiconDecoder(options, trie, lm, self.delimiter, self.blank, word_dict.get_index("<unk>"),
                                    [], False)
        self._cache = {key: (decoder, lm, trie, kenlm, options)}  # keep one set (memory), refs alive
        return self._cache[key]

    def decode_beams(self, logits, beam_width=None, hotwords=None, hotword_weight=10.0, n_best=1):
        """The `n_best` best hypotheses for one recording's logits.

        Args:
            logits: float [frames, classes] (stitched chunks of long audio are fine).
            beam_width: int. Overrides the decoder's. Defaults to None.
            hotwords: list of str. Words to favour (added to the vocabulary of words if new).
            hotword_weight: float. Bonus (natural-log units) per hotword in a hypothesis. Defaults to 10.
            n_best: int. Hypotheses returned. Defaults to 1.

        Returns:
            A list of `Beam`, best first.
        """
        logits = np.asarray(logits, np.float32)
        if logits.ndim != 2 or logits.shape[0] == 0:
            raise ValueError(f"logits must be [frames, classes] with frames > 0, got shape {logits.shape}")
        if not np.isfinite(logits).all():
            raise ValueError("logits contain NaN or infinite values")
        if isinstance(n_best, bool) or not isinstance(n_best, (int, np.integer)) or n_best < 1:
            raise ValueError(f"n_best must be a positive int, got {n_best!r}")
        hotwords = [str(w) for w in (hotwords or []) if str(w).strip()]
        if not math.isfinite(hotword_weight):
            raise ValueError(f"hotword_weight must be finite, got {hotword_weight!r}")
        saved = self.beam_width
        if beam_width is not None:
            self.beam_width = self._check_width(beam_width)
        try:
            decoder = self._build(hotwords, hotword_weight)[0]
        finally:
            self.beam_width = saved
        log_probs = log_softmax(logits)
        frames, classes = log_probs.shape
        # Tokens below token_min_logp are not expanded (the frame's best always is), and one extra frame
        # that is surely the word delimiter closes the last word: the lexicon search emits a word only
        # when its spelling ends with "|", which the last word of a recording often lacks.
        emissions = np.full((frames + 1, classes), np.float32(_NEVER))
        emissions[:frames] = np.where(log_probs >= self.token_min_logp, log_probs, np.float32(_NEVER))
        rows = np.arange(frames)
        best = log_probs.argmax(-1)
        emissions[rows, best] = log_probs[rows, best]
        emissions[frames, self.delimiter] = 0.0
        emissions = np.ascontiguousarray(emissions, np.float32)
        results = decoder.decode(emissions.ctypes.data, frames + 1, classes)
        beams = []
        for result in results[:n_best]:
            path = self._single_delimiters(np.asarray(result.tokens, np.int64)[1:frames + 1])  # padded 1 each side
            out = self.tokenizer.decode(path, output_word_offsets=True)
            words = add_confidence(out.word_offsets, path_log_probs(log_probs, path))
            logit_score = float(path_log_probs(log_probs, path).sum())
            beams.append(Beam(text=out.text, path=path, score=float(result.score),
                              logit_score=logit_score,
                              lm_score=float(result.score) - logit_score, word_offsets=words))
        return beams

    def _single_delimiters(self, path):
        """`path` with the blank on delimiter runs that follow another delimiter run across blanks: the
        search may emit "| _ |" between words, which would read as two spaces."""
        frames = np.flatnonzero(path != self.blank)
        if frames.size < 2:
            return path
        labels = path[frames]
        starts = np.flatnonzero(np.concatenate([[True], (labels[1:] != labels[:-1]) | (np.diff(frames) > 1)]))
        run_labels = labels[starts]
        again = np.flatnonzero((run_labels[1:] == self.delimiter) & (run_labels[:-1] == self.delimiter)) + 1
        if again.size:
            path = path.copy()
            ends = np.append(starts[1:], labels.size)
            for run in again:
                path[frames[starts[run]:ends[run]]] = self.blank
        return path

    def decode(self, logits, **kwargs):
        """The best hypothesis' text for one recording's logits (options as `decode_beams`)."""
        return self.decode_beams(logits, **kwargs)[0].text

    def decode_batch(self, logits_list, **kwargs):
        """`decode` over a list of [frames, classes] arrays (or a padded [batch, frames, classes] array
        with `frame_lengths=`). Sequential: one process, results in order."""
        lengths = kwargs.pop("frame_lengths", None)
        if lengths is not None:
            logits_list = [row[:int(n)] for row, n in zip(logits_list, lengths)]
        return [self.decode(row, **kwargs) for row in logits_list]


@functools.lru_cache(maxsize=None)
def _hotword_lm_class():
    """The LM wrapper adding hotword bonuses (a subclass of flashlight's LM, defined once it is importable)."""
    from flashlight.lib.text.decoder import LM

    class HotwordLM(LM):
        """KenLM plus a bonus (in LM units: the decoder multiplies it by the LM weight) for each hotword."""

        def __init__(self, kenlm, hot_ids, bonus):
            LM.__init__(self)
            self.kenlm, self.hot_ids, self.bonus = kenlm, frozenset(hot_ids), float(bonus)

        def start(self, start_with_nothing):
            return self.kenlm.start(start_with_nothing)

        def score(self, state, token_index):
            out, score = self.kenlm.score(state, token_index)
            return out, score + (self.bonus if token_index in self.hot_ids else 0.0)

        def finish(self, state):
            return self.kenlm.finish(state)

    return HotwordLM
