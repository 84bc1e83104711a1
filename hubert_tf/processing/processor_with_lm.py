"""`HubertProcessorWithLM`: a `HubertProcessor` plus a KenLM beam-search decoder, in the layout of
transformers' `Wav2Vec2ProcessorWithLM` (so hub repositories that ship one load unchanged):

    preprocessor_config.json, vocab.json, tokenizer_config.json, special_tokens_map.json
    language_model/attrs.json      {"alpha", "beta", "unk_score_offset", "score_boundary"}
    language_model/unigrams.txt    one word per line
    language_model/<name>.arpa | .bin   the KenLM model

Decoding needs `pip install "hubert_tf[lm]"` (flashlight-text); loading the files does not.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from hubert_tf.files import atomic_files, read_json
from hubert_tf.processing.feature_extraction import resolve_pretrained_file
from hubert_tf.processing.processor import HubertProcessor, split_processor_kwargs

LANGUAGE_MODEL_DIR = "language_model"
ATTRS_FILE = "attrs.json"
UNIGRAMS_FILE = "unigrams.txt"
# Names tried on the hub (a local directory is listed instead).
HUB_LM_NAMES = ("5gram.bin", "4gram.bin", "3gram.bin", "lm.binary", "kenlm.bin", "5gram.arpa", "4gram.arpa",
                "3gram.arpa", "lm.arpa")
DECODER_ATTRS = ("alpha", "beta", "unk_score_offset", "score_boundary")


@dataclass
class DecoderWithLMOutput:
    """LM decoding result (transformers' `Wav2Vec2DecoderWithLMOutput` fields; lists for a batch or n-best).

    Fields:
        text: str. logit_score: float, the acoustic log-probability of the path. lm_score: float, the
        weighted LM part of the score (with word and hotword bonuses). word_offsets: list of
        {"word", "start_offset", "end_offset", "confidence"} (frames).
    """

    text: object
    logit_score: object = None
    lm_score: object = None
    word_offsets: object = None

    def __getitem__(self, key):
        return getattr(self, key)


def _as_array(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _is_logits(x, ndim):
    """True for a float array / tensor of `ndim` dimensions (logits), False for integer ids."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    name = getattr(dtype, "name", str(dtype))
    return "float" in name and len(getattr(x, "shape", ())) == ndim


def _read_unigrams(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def find_language_model(directory):
    """The KenLM file (.arpa / .bin / .binary / .klm) in a local `language_model/` directory, or OSError."""
    from hubert_tf.decoding.beam import LM_SUFFIXES

    names = sorted(n for n in os.listdir(directory) if n.endswith(LM_SUFFIXES))
    if not names:
        raise OSError(f"{directory}: no KenLM file (*.arpa, *.bin) in the language model directory")
    return os.path.join(directory, names[0])


def load_language_model_files(name_or_path, **hub):
    """(lm_path, unigrams or None, attrs dict) from a model directory / hub repo, an LM directory
    (holding attrs.json / the LM) or a single .arpa / .bin file."""
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        return path, None, {}
    if os.path.isdir(path):
        directory = os.path.join(path, LANGUAGE_MODEL_DIR)
        directory = directory if os.path.isdir(directory) else path
        attrs_path = os.path.join(directory, ATTRS_FILE)
        unigrams_path = os.path.join(directory, UNIGRAMS_FILE)
        attrs = read_json(attrs_path) if os.path.isfile(attrs_path) else {}
        unigrams = _read_unigrams(unigrams_path) if os.path.isfile(unigrams_path) else None
        return find_language_model(directory), unigrams, attrs
    attrs_path = resolve_pretrained_file(path, f"{LANGUAGE_MODEL_DIR}/{ATTRS_FILE}", **hub)
    unigrams_path = resolve_pretrained_file(path, f"{LANGUAGE_MODEL_DIR}/{UNIGRAMS_FILE}", required=False, **hub)
    for name in HUB_LM_NAMES:
        lm = resolve_pretrained_file(path, f"{LANGUAGE_MODEL_DIR}/{name}", required=False, **hub)
        if lm is not None:
            return lm, _read_unigrams(unigrams_path) if unigrams_path else None, read_json(attrs_path)
    raise OSError(f"{path}: no KenLM file in {LANGUAGE_MODEL_DIR}/ (tried {', '.join(HUB_LM_NAMES)})")


def _checked_attrs(attrs, source):
    if not isinstance(attrs, dict):
        raise ValueError(f"{source}: {ATTRS_FILE} must hold a JSON object")
    return {k: attrs[k] for k in DECODER_ATTRS if k in attrs}


class HubertProcessorWithLM(HubertProcessor):
    """Feature extractor + CTC tokenizer + KenLM beam-search decoder.

    Args:
        feature_extractor: a `HubertFeatureExtractor`.
        tokenizer: a `HubertCTCTokenizer`.
        kenlm_model_path: str. The `.arpa` or KenLM binary file.
        unigrams: list of str, the words of the LM (needed for a binary LM). Defaults to the ARPA's.
        **decoder_options: `alpha`, `beta`, `unk_score_offset`, `score_boundary`, `beam_width`, ... (see
            `hubert_tf.decoding.BeamSearchDecoderWithLM`).

    Example:

    >>> processor = HubertProcessorWithLM.from_pretrained("model_with_lm")  # doctest: +SKIP
    >>> processor.decode_logits(logits, hotwords=["hubert"])  # doctest: +SKIP
    'HELLO HUBERT'
    """

    def __init__(self, feature_extractor, tokenizer, kenlm_model_path, unigrams=None, **decoder_options):
        super().__init__(feature_extractor, tokenizer)
        self.kenlm_model_path = os.fspath(kenlm_model_path)
        if not os.path.isfile(self.kenlm_model_path):
            raise FileNotFoundError(f"{self.kenlm_model_path}: no such KenLM file")
        self.unigrams = None if unigrams is None else list(unigrams)
        self.decoder_options = dict(decoder_options)
        self._decoder = None

    @property
    def decoder(self):
        """The `BeamSearchDecoderWithLM` (built on first use: needs the `lm` extra)."""
        if self._decoder is None:
            from hubert_tf.decoding.beam import BeamSearchDecoderWithLM

            self._decoder = BeamSearchDecoderWithLM(self.tokenizer, self.kenlm_model_path, self.unigrams,
                                                    **self.decoder_options)
        return self._decoder

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Loads a `Wav2Vec2ProcessorWithLM`-layout directory or hub repository.

        Args:
            name_or_path: str. Directory or hub id.
            **kwargs: hub options and component arguments as in `HubertProcessor.from_pretrained`, and
                decoder options (`alpha`, `beta`, `beam_width`, ... of
                `hubert_tf.decoding.BeamSearchDecoderWithLM`) overriding `attrs.json`.

        Returns:
            A `HubertProcessorWithLM`.
        """
        from hubert_tf.decoding.beam import BeamSearchDecoderWithLM
        from hubert_tf.hub import locate, parameter_names

        decoder_keys = parameter_names(BeamSearchDecoderWithLM, skip=("tokenizer", "kenlm_model_path", "unigrams"))
        hub, _, _, decoder_options = split_processor_kwargs(f"{cls.__name__}.from_pretrained", kwargs,
                                                            extra=decoder_keys)
        base = HubertProcessor.from_pretrained(name_or_path,
                                               **{k: v for k, v in kwargs.items() if k not in decoder_options})
        where, local = locate(name_or_path, hub.get("subfolder"))
        lm_path, unigrams, attrs = load_language_model_files(
            where if local else name_or_path, **{k: v for k, v in hub.items() if not (local and k == "subfolder")})
        options = {**_checked_attrs(attrs, name_or_path), **decoder_options}
        return cls(base.feature_extractor, base.tokenizer, lm_path, unigrams, **options)

    @classmethod
    def from_processor(cls, processor, language_model, **decoder_options):
        """A `HubertProcessorWithLM` from a `HubertProcessor` and an LM file or `language_model/` directory."""
        lm_path, unigrams, attrs = load_language_model_files(language_model)
        options = {**_checked_attrs(attrs, language_model), **decoder_options}
        return cls(processor.feature_extractor, processor.tokenizer, lm_path, unigrams, **options)

    def save_pretrained(self, save_directory):
        """Writes the processor files and `language_model/` (attrs.json, unigrams.txt, the LM file).

        Returns:
            A list of the written paths.
        """
        written = super().save_pretrained(save_directory)
        directory = os.path.join(os.fspath(save_directory), LANGUAGE_MODEL_DIR)
        os.makedirs(directory, exist_ok=True)
        unigrams = self.unigrams if self.unigrams is not None else None
        if unigrams is None and self.kenlm_model_path.endswith(".arpa"):
            from hubert_tf.decoding.beam import _words_of_arpa

            unigrams = [w for w in _words_of_arpa(self.kenlm_model_path) if w not in ("<s>", "</s>", "<unk>")]
        attrs = {"alpha": 0.5, "beta": 1.5, "unk_score_offset": -10.0, "score_boundary": True}
        attrs.update(_checked_attrs(self.decoder_options, "decoder options"))
        lm_name = os.path.basename(self.kenlm_model_path)
        target_lm = os.path.join(directory, lm_name)
        with atomic_files(directory) as files:
            with files.open(ATTRS_FILE, "w") as f:
                f.write(json.dumps(attrs))
            if unigrams is not None:
                with files.open(UNIGRAMS_FILE, "w") as f:
                    f.write("".join(w + "\n" for w in unigrams))
            if os.path.abspath(target_lm) != os.path.abspath(self.kenlm_model_path):
                shutil.copyfile(self.kenlm_model_path, files.path(lm_name))
        names = [ATTRS_FILE] + ([UNIGRAMS_FILE] if unigrams is not None else []) + [lm_name]
        return written + [os.path.join(directory, n) for n in names]

    def decode(self, token_ids_or_logits, **kwargs):
        """Float logits [frames, classes]: LM beam search, a `DecoderWithLMOutput` (as transformers'
        `Wav2Vec2ProcessorWithLM.decode`); integer ids: greedy CTC text, as `HubertProcessor.decode`.

        Args:
            token_ids_or_logits: logits [frames, classes] or ids [frames].
            **kwargs: beam-search options (`beam_width`, `hotwords`, `hotword_weight`, `n_best`) for
                logits; `HubertCTCTokenizer.decode` options for ids.
        """
        if not _is_logits(token_ids_or_logits, 2):
            return super().decode(token_ids_or_logits, **kwargs)
        n_best = kwargs.get("n_best", 1)
        beams = self.decoder.decode_beams(_as_array(token_ids_or_logits), **kwargs)
        if n_best == 1:
            beam = beams[0]
            return DecoderWithLMOutput(beam.text, beam.logit_score, beam.lm_score, beam.word_offsets)
        return DecoderWithLMOutput([b.text for b in beams], [b.logit_score for b in beams],
                                   [b.lm_score for b in beams], [b.word_offsets for b in beams])

    def batch_decode(self, sequences_or_logits, **kwargs):
        """Float logits [batch, frames, classes] (or a list of [frames, classes]): LM beam search per row,
        one `DecoderWithLMOutput` whose fields are lists (as transformers); integer ids: greedy CTC texts.
        Padded logits take `frame_lengths=` (valid frames per row)."""
        rows = sequences_or_logits
        if not (_is_logits(rows, 3) or (isinstance(rows, (list, tuple)) and rows and _is_logits(rows[0], 2))):
            return super().batch_decode(sequences_or_logits, **kwargs)
        lengths = kwargs.pop("frame_lengths", None)
        rows = [_as_array(r) for r in rows]
        if lengths is not None:
            rows = [r[:int(n)] for r, n in zip(rows, lengths)]
        outs = [self.decode(r, **kwargs) for r in rows]
        return DecoderWithLMOutput([o.text for o in outs], [o.logit_score for o in outs],
                                   [o.lm_score for o in outs], [o.word_offsets for o in outs])

    def decode_logits(self, logits, **kwargs):
        """Beam search + LM on one recording's logits [frames, classes]; options as
        `BeamSearchDecoderWithLM.decode_beams`. Returns the text."""
        return self.decoder.decode(logits, **kwargs)

    def batch_decode_logits(self, logits, **kwargs):
        """`decode_logits` over a list of logits arrays (or padded logits with `frame_lengths=`)."""
        return self.decoder.decode_batch(logits, **kwargs)
