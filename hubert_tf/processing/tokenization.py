"""Character-level CTC tokenizer: text -> label ids, CTC output ids -> text (with offsets).

`HubertCTCTokenizer` reproduces `transformers.Wav2Vec2CTCTokenizer` (what HuBERT CTC checkpoints
use) from the hub's `vocab.json`, `tokenizer_config.json` and `special_tokens_map.json`, with
numpy only: no `transformers`, `torch` or `tensorflow` import (TF is imported only for
``return_tensors="tf"``; TF tensors passed to `decode` are recognised by type name).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from hubert_tf.configuration import _as_bool, _as_int
from hubert_tf.processing.feature_extraction import (
    BatchFeature,
    _is_tf_tensor,
    json_text,
    padding_strategy,
    read_json,
    round_up,
    write_files,
)

VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

LABEL_PAD_ID = -100  # ignored by CTC losses (Keras / HF convention for padded label positions)

_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
# Keys this class interprets; every other tokenizer_config.json key is kept and written back.
_KNOWN_KEYS = set(_SPECIAL_NAMES) | {
    "word_delimiter_token",
    "replace_word_delimiter_char",
    "do_lower_case",
    "target_lang",
    "padding_side",
    "clean_up_tokenization_spaces",
    "added_tokens_decoder",
    "additional_special_tokens",
    "extra_special_tokens",
    "model_specific_special_tokens",
}


@dataclass
class AddedToken:
    """A token matched as a whole in text before character splitting.

    `lstrip` / `rstrip` swallow the whitespace on that side of the token when encoding, as in
    transformers (every multi-character vocabulary entry such as "<unk>" has both).
    """

    content: str
    id: int
    lstrip: bool = False
    rstrip: bool = False
    special: bool = False


@dataclass
class HubertCTCTokenizerOutput:
    """Result of `decode` / `batch_decode` when offsets are requested.

    Fields (also readable as ``output["text"]``):
        text: the transcription (str), or a list of them from `batch_decode`.
        char_offsets: list of ``{"char", "start_offset", "end_offset"}`` dicts (frame indices,
            end exclusive), or None if not requested; a list of such lists from `batch_decode`.
        word_offsets: list of ``{"word", "start_offset", "end_offset"}`` dicts, or None.
    """

    text: object
    char_offsets: object = None
    word_offsets: object = None

    def __getitem__(self, key):
        return getattr(self, key)

    def keys(self):
        return [name for name in ("text", "char_offsets", "word_offsets") if getattr(self, name) is not None]


@dataclass(frozen=True)
class CTCDecodingTable:
    """Greedy CTC decoding of ids as per-id arrays (see `HubertCTCTokenizer.ctc_decoding_table`).

    Fields:
        pieces: tuple of str [size]. Text of each id (the word delimiter already replaced).
        merge_ids: int32 [size]. Repeats are merged when these are equal (one id per distinct token).
        blank: bool [size]. Ids dropped after merging (the CTC blank, i.e. the pad token).
        dropped: bool [size]. Ids dropped before merging (`skip_special_tokens`; all False otherwise).
        pad_id: int. The pad id (written on padded frames).
        lower_case: bool. Lower-case the text (`do_lower_case`).
        clean_up: tuple of (before, after) str pairs, replaced in order (empty when clean-up is off).
    """

    pieces: tuple
    merge_ids: np.ndarray
    blank: np.ndarray
    dropped: np.ndarray
    pad_id: int
    lower_case: bool
    clean_up: tuple

    @property
    def size(self):
        """Number of ids the table covers."""
        return len(self.pieces)


def _check_vocab(encoder, target_lang):
    """token -> id with str tokens and non-negative int ids (numpy integers accepted), or ValueError
    naming the entry: a float or string id would otherwise be cast silently (3.7 -> 3)."""
    where = f"vocab[{target_lang!r}]" if target_lang is not None else "vocab"
    checked = {}
    for token, index in encoder.items():
        if not isinstance(token, str):
            raise ValueError(f"{where} tokens must be strings, got {token!r} ({type(token).__name__})")
        index = _as_int(f"{where}[{token!r}]", index)
        if index < 0:
            raise ValueError(f"{where}[{token!r}] must be a non-negative id, got {index}")
        checked[token] = index
    return checked


def _token_content(value):
    # Older hub files store special tokens as {"content": "<s>", "__type": "AddedToken", ...}.
    if isinstance(value, dict):
        return value.get("content")
    return value


class HubertCTCTokenizer:
    """Character tokenizer for CTC speech recognition, compatible with Wav2Vec2CTCTokenizer.

    Encoding upper-cases (if `do_lower_case`), maps spaces to the word delimiter "|", every
    character to its vocabulary id and unknown characters to `unk_token`; multi-character tokens
    ("<unk>", "<s>", ...) written in the text are kept whole. Decoding does CTC collapse: repeated
    ids are merged, the blank (= `pad_token`) is dropped and "|" becomes a space.

    Ids, texts and offsets equal the reference's; differences: offsets are python ints (the
    reference gives numpy int64), a scalar id decodes as a one-id sequence, and the
    `single_word` / `normalized` flags of added tokens are ignored (HuBERT vocabularies never
    set them).

    Args:
        vocab: dict mapping token -> id, or the path of a `vocab.json`. A nested dict (one
            vocabulary per language, as in MMS checkpoints) needs `target_lang`.
        bos_token, eos_token, unk_token, pad_token: str. Special tokens; `pad_token` is the CTC
            blank. Default to "<s>", "</s>", "<unk>", "<pad>".
        word_delimiter_token: str. Token standing for a space. Defaults to "|".
        replace_word_delimiter_char: str. What the delimiter becomes when decoding. Defaults to " ".
        do_lower_case: bool. Upper-case text before encoding and lower-case decoded text (the
            vocabulary is upper case). Defaults to False.
        target_lang: str. Language key of a nested vocabulary. Defaults to None.
        padding_side: str. "right" or "left" padding of batched ids. Defaults to "right".
        clean_up_tokenization_spaces: bool. Default for `decode`'s clean-up of spaces before
            punctuation (" ." -> "."). Defaults to False, as transformers 5.
        added_tokens: dict id -> {"content", "lstrip", "rstrip", "special"} (the
            `added_tokens_decoder` of `tokenizer_config.json`). Defaults to None.
        additional_special_tokens: list of str. More tokens dropped by
            ``decode(skip_special_tokens=True)``. Defaults to None.
        **kwargs: other `tokenizer_config.json` keys, kept and written back by `save_pretrained`.

    Example:

    >>> vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6}
    >>> tokenizer = HubertCTCTokenizer(vocab)
    >>> tokenizer("AB BA")["input_ids"]
    [5, 6, 4, 6, 5]
    >>> tokenizer.decode([5, 5, 0, 5, 6, 4, 4, 6, 0])
    'AAB B'
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
        replace_word_delimiter_char=" ",
        do_lower_case=False,
        target_lang=None,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        added_tokens=None,
        additional_special_tokens=None,
        **kwargs,
    ):
        if isinstance(vocab, (str, os.PathLike)):
            vocab = read_json(vocab)
        if not isinstance(vocab, dict) or not vocab:
            raise ValueError(f"vocab must be a non-empty dict token -> id (or a vocab.json path), got {type(vocab)}")
        self.vocab = vocab
        nested = all(isinstance(value, dict) for value in vocab.values())
        if target_lang is not None:
            if not nested or target_lang not in vocab:
                choices = sorted(vocab) if nested else "none: the vocabulary is not nested"
                raise ValueError(f"target_lang={target_lang!r} is not in the vocabulary; languages: {choices}")
            encoder = vocab[target_lang]
        elif nested:
            raise ValueError(
                f"vocab is a multi-lingual (nested) vocabulary; pass target_lang=, one of {sorted(vocab)[:10]}..."
            )
        else:
            encoder = vocab
        self.encoder = _check_vocab(encoder, target_lang)
        self.decoder = {index: token for token, index in self.encoder.items()}
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side={padding_side!r} must be 'right' or 'left'")

        self.bos_token = _token_content(bos_token)
        self.eos_token = _token_content(eos_token)
        self.unk_token = _token_content(unk_token)
        self.pad_token = _token_content(pad_token)
        self.word_delimiter_token = _token_content(word_delimiter_token)
        self.replace_word_delimiter_char = replace_word_delimiter_char
        # Strings such as "false" are refused: bool("false") is True.
        self.do_lower_case = _as_bool("do_lower_case", do_lower_case)
        self.target_lang = target_lang
        self.padding_side = padding_side
        self.clean_up_tokenization_spaces = _as_bool("clean_up_tokenization_spaces", clean_up_tokenization_spaces)
        self.additional_special_tokens = [_token_content(t) for t in additional_special_tokens or []]
        self.extra_config = dict(kwargs)
        self._added_tokens_spec = dict(added_tokens or {})  # kept: `set_target_lang` rebuilds from it
        self._build_added_tokens(self._added_tokens_spec)

    def set_target_lang(self, target_lang):
        """Switches a multi-lingual (MMS) tokenizer to the vocabulary of `target_lang`, as transformers'
        `Wav2Vec2CTCTokenizer.set_target_lang`; pair it with the model's `load_adapter(target_lang)`.

        Args:
            target_lang: str. A key of the nested `vocab.json`.

        Raises:
            ValueError: the vocabulary is not nested, or has no such language (the message lists some).

        Example:

        >>> tokenizer = HubertCTCTokenizer({"eng": {"<pad>": 0, "|": 1, "a": 2}, "fra": {"<pad>": 0, "|": 1, "b": 2}},
        ...                                target_lang="eng")
        >>> tokenizer.set_target_lang("fra")
        >>> tokenizer.decode([2, 1, 2])
        'b b'
        """
        nested = all(isinstance(value, dict) for value in self.vocab.values())
        if not nested or target_lang not in self.vocab:
            choices = sorted(self.vocab)[:20] if nested else "none: the vocabulary is not nested"
            raise ValueError(f"target_lang={target_lang!r} is not in the vocabulary; languages: {choices}")
        self.encoder = _check_vocab(self.vocab[target_lang], target_lang)
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.target_lang = target_lang
        self._build_added_tokens(self._added_tokens_spec)

    def _build_added_tokens(self, added_tokens):
        """Sets up the tokens matched whole in text, mirroring transformers' order of additions."""
        self.added_tokens = {}  # content -> AddedToken
        for index, token in added_tokens.items():
            if isinstance(token, str):
                token = {"content": token}
            self.added_tokens[token["content"]] = AddedToken(
                token["content"],
                int(index),
                lstrip=bool(token.get("lstrip", False)),
                rstrip=bool(token.get("rstrip", False)),
                special=bool(token.get("special", False)),
            )
        # Special tokens missing from the vocabulary are appended after it.
        for content in self.all_special_tokens:
            if content not in self.added_tokens:
                index = self.encoder.get(content)
                if index is None:
                    index = len(self.get_vocab())
                self.added_tokens[content] = AddedToken(content, index, special=True)
        # Multi-character vocabulary entries always strip surrounding spaces (Wav2Vec2CTCTokenizer).
        for content, index in self.encoder.items():
            if len(content) > 1:
                special = content in self.added_tokens and self.added_tokens[content].special
                self.added_tokens[content] = AddedToken(content, index, lstrip=True, rstrip=True, special=special)
        self.added_decoder = {token.id: token.content for token in self.added_tokens.values()}
        # Leftmost, then longest, match wins (as transformers' trie).
        contents = sorted(self.added_tokens, key=len, reverse=True)
        self._added_pattern = re.compile("|".join(map(re.escape, contents))) if contents else None

    # -- loading and saving ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Loads `vocab.json` plus (if present) `tokenizer_config.json`, `special_tokens_map.json` and
        `added_tokens.json` from a directory or hub repository.

        Args:
            name_or_path: str. Local directory or hub id (e.g. "facebook/hubert-large-ls960-ft").
            **kwargs: hub options (`revision`, `cache_dir`, `force_download`, `local_files_only`, `token`,
                `subfolder`; see `hubert_tf.hub.resolve_file`), other transformers loading options (no
                effect), and constructor arguments that replace the files' values (e.g.
                ``target_lang="fra"``); any other keyword is a TypeError with a did-you-mean.

        Returns:
            A `HubertCTCTokenizer`.

        Example:

        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3}).save_pretrained(folder)
        >>> HubertCTCTokenizer.from_pretrained(folder).decode([3, 0, 3, 2, 3])
        'AA A'
        """
        from hubert_tf.hub import check_keywords, parameter_names, resolve_file, split_loading_options

        owner = f"{cls.__name__}.from_pretrained"
        hub, own, overrides = split_loading_options(kwargs, handled=("target_lang",), owner=owner)
        overrides.update(own)  # target_lang is a loading option of models, a field of tokenizers
        vocab_path = resolve_file(name_or_path, VOCAB_FILE, **hub)
        config = {}
        config_path = resolve_file(name_or_path, TOKENIZER_CONFIG_FILE, required=False, **hub)
        if config_path is not None:
            config.update(read_json(config_path))
        special_path = resolve_file(name_or_path, SPECIAL_TOKENS_MAP_FILE, required=False, **hub)
        if special_path is not None:
            config.update({k: v for k, v in read_json(special_path).items() if v is not None})
        added_path = resolve_file(name_or_path, ADDED_TOKENS_FILE, required=False, **hub)
        added = dict(config.pop("added_tokens_decoder", None) or {})
        if added_path is not None:
            for content, index in read_json(added_path).items():
                added.setdefault(str(index), {"content": content})
        check_keywords(overrides, parameter_names(cls, skip=("vocab",)) | set(config), owner=owner,
                       what="tokenizer field")
        config.update(overrides)
        return cls.from_config(read_json(vocab_path), {**config, "added_tokens_decoder": added})

    def push_to_hub(self, repo_id, **kwargs):
        """Uploads `save_pretrained`'s files to a hub repo in one commit (see `hubert_tf.push.push_to_hub`)."""
        from hubert_tf.push import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_config(cls, vocab, config):
        """Builds a tokenizer from a vocabulary dict and a `tokenizer_config.json`-style dict."""
        config = dict(config)
        added = config.pop("added_tokens_decoder", None) or {}
        # transformers 5 writes the delimiter under model_specific_special_tokens as well.
        model_specific = config.pop("model_specific_special_tokens", None) or {}
        config.setdefault("word_delimiter_token", model_specific.get("word_delimiter_token", "|"))
        extra = config.pop("extra_special_tokens", None)
        if extra and not config.get("additional_special_tokens"):
            config["additional_special_tokens"] = list(extra) if isinstance(extra, (list, tuple)) else []
        return cls(vocab, added_tokens=added, **config)

    def save_pretrained(self, save_directory):
        """Writes `vocab.json`, `tokenizer_config.json` and `special_tokens_map.json`.

        The files load in transformers' `Wav2Vec2CTCTokenizer` as well as in this class. All three are
        serialised before any file is touched, then written atomically: a failure (a value that is not
        JSON data, a full disk) leaves the previous files intact.

        Returns:
            A list of the written paths.

        Raises:
            ValueError: a vocabulary or config value is not JSON data (naming it); nothing is written.
        """
        return write_files(save_directory, self.files_to_save())

    def files_to_save(self):
        """`{file name: text}` of `save_pretrained`, serialised (raises ValueError before any write)."""
        specials = {name: getattr(self, name) for name in _SPECIAL_NAMES}
        if self.additional_special_tokens:
            specials["additional_special_tokens"] = list(self.additional_special_tokens)
        config = dict(self.extra_config)
        config.update(specials)
        config.update(
            word_delimiter_token=self.word_delimiter_token,
            replace_word_delimiter_char=self.replace_word_delimiter_char,
            do_lower_case=self.do_lower_case,
            target_lang=self.target_lang,
            padding_side=self.padding_side,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            added_tokens_decoder={
                str(token.id): {
                    "content": token.content,
                    "lstrip": token.lstrip,
                    "normalized": False,
                    "rstrip": token.rstrip,
                    "single_word": False,
                    "special": token.special,
                }
                for token in sorted(self.added_tokens.values(), key=lambda t: t.id)
            },
        )
        config.setdefault("tokenizer_class", "Wav2Vec2CTCTokenizer")
        contents = {VOCAB_FILE: self.vocab, TOKENIZER_CONFIG_FILE: config, SPECIAL_TOKENS_MAP_FILE: specials}
        return {name: json_text(data, name) for name, data in contents.items()}

    # -- vocabulary ---------------------------------------------------------------------------------

    @property
    def vocab_size(self):
        """Number of entries in the (selected) vocabulary, without added tokens."""
        return len(self.decoder)

    def __len__(self):
        return len(self.get_vocab())

    def get_vocab(self):
        """Returns token -> id for the vocabulary plus added tokens."""
        vocab = dict(self.encoder)
        vocab.update({token.content: token.id for token in getattr(self, "added_tokens", {}).values()})
        return vocab

    @property
    def all_special_tokens(self):
        """bos, eos, unk, pad, then the word delimiter and additional special tokens (no None, no repeats)."""
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token, self.word_delimiter_token]
        tokens += self.additional_special_tokens
        return list(dict.fromkeys(token for token in tokens if token is not None))

    @property
    def all_special_ids(self):
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def _token_id(self, name):
        token = getattr(self, name)
        return None if token is None else self.convert_tokens_to_ids(token)

    pad_token_id = property(lambda self: self._token_id("pad_token"), doc="Id of the pad / CTC blank token.")
    unk_token_id = property(lambda self: self._token_id("unk_token"), doc="Id of the unknown token.")
    bos_token_id = property(lambda self: self._token_id("bos_token"), doc="Id of the bos token.")
    eos_token_id = property(lambda self: self._token_id("eos_token"), doc="Id of the eos token.")
    word_delimiter_token_id = property(
        lambda self: self._token_id("word_delimiter_token"), doc="Id of the word delimiter ('|')."
    )

    def convert_tokens_to_ids(self, tokens):
        """Maps a token (str) or list of tokens to ids; unknown tokens map to `unk_token_id`."""
        if isinstance(tokens, str):
            if tokens in self.added_tokens:
                return self.added_tokens[tokens].id
            return self.encoder.get(tokens, self.encoder.get(self.unk_token))
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """Maps an id or list of ids to tokens; unknown ids map to `unk_token`."""
        if isinstance(ids, (int, np.integer)):
            index = int(ids)
            return self.decoder.get(index, self.added_decoder.get(index, self.unk_token))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.convert_ids_to_tokens(index) for index in ids if int(index) not in special]

    # -- encoding -------------------------------------------------------------------------------------

    def tokenize(self, text):
        """Splits text into tokens: added tokens whole, every other character on its own.

        Example:

        >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3})
        >>> tokenizer.tokenize("A <unk> AA")
        ['A', '<unk>', 'A', 'A']
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        pieces = self._split_on_added_tokens(text)
        for i, piece in enumerate(pieces):
            token = self.added_tokens.get(piece)
            if token is None:
                continue
            if token.rstrip and i + 1 < len(pieces) and pieces[i + 1]:
                pieces[i + 1] = pieces[i + 1].lstrip()
            if token.lstrip and i > 0 and pieces[i - 1]:
                pieces[i - 1] = pieces[i - 1].rstrip()
        tokens = []
        for piece in pieces:
            if not piece:
                continue
            if piece in self.added_tokens:
                tokens.append(piece)
                continue
            if self.do_lower_case:
                piece = piece.upper()
            tokens.extend(piece.replace(" ", self.word_delimiter_token))
        return tokens

    def _split_on_added_tokens(self, text):
        if self._added_pattern is None:
            return [text] if text else []
        pieces, start = [], 0
        for match in self._added_pattern.finditer(text):
            pieces += [text[start : match.start()], match.group()]
            start = match.end()
        pieces.append(text[start:])
        return [piece for piece in pieces if piece]

    def encode(self, text):
        """Returns the list of ids for one string."""
        return self.convert_tokens_to_ids(self.tokenize(text))

    def __call__(
        self,
        text,
        padding=False,
        max_length=None,
        truncation=False,
        pad_to_multiple_of=None,
        return_attention_mask=None,
        return_tensors=None,
        padding_side=None,
    ):
        """Encodes one string or a batch of strings.

        Args:
            text: str or list of str.
            padding: True / "longest", "max_length" or False. Pads with `pad_token_id`. Defaults to False.
            max_length: int. Length for `padding="max_length"` and `truncation`.
            truncation: bool. Cut sequences to `max_length`. Defaults to False.
            pad_to_multiple_of: int. Round padded lengths up to a multiple of this.
            return_attention_mask: bool. Defaults to True.
            return_tensors: "np", "tf" or None (python lists). A single string then gets a batch
                axis of 1. Defaults to None.
            padding_side: "right" or "left". Defaults to the tokenizer's `padding_side`.

        Returns:
            A `BatchFeature` with `input_ids` and `attention_mask`: a list of ints for one string
            and no tensors, else ``[batch, tokens]`` (int64 numpy or int32 tf).

        Example:

        >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
        >>> tokenizer(["AB", "A"], padding=True)["input_ids"]
        [[3, 4], [3, 0]]
        """
        single = isinstance(text, str)
        if not single and not (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)):
            raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
        batch = [self.encode(t) for t in ([text] if single else text)]
        if truncation and max_length is not None:
            batch = [ids[:max_length] for ids in batch]
        strategy = padding_strategy(padding, max_length)
        if strategy == "longest":
            max_length = max((len(ids) for ids in batch), default=0)
        target = round_up(max_length, pad_to_multiple_of) if strategy != "do_not_pad" else None
        side = padding_side or self.padding_side
        input_ids, attention_mask = [], []
        for ids in batch:
            missing = max(target - len(ids), 0) if target is not None else 0
            mask = [1] * len(ids)
            if side == "right":
                ids, mask = ids + [self.pad_token_id] * missing, mask + [0] * missing
            else:
                ids, mask = [self.pad_token_id] * missing + ids, [0] * missing + mask
            input_ids.append(ids)
            attention_mask.append(mask)
        result = BatchFeature(input_ids=input_ids)
        if return_attention_mask is None or return_attention_mask:
            result["attention_mask"] = attention_mask
        if single and return_tensors is None:
            for key in result:
                result[key] = result[key][0]
        return result.convert_to_tensors(return_tensors)

    def encode_labels(self, text, pad_to_multiple_of=None, return_tensors=None):
        """Encodes training targets: ids padded to the longest with -100 (ignored by CTC losses).

        Args:
            text: str or list of str.
            pad_to_multiple_of: int. Round the padded length up to a multiple of this.
            return_tensors: "np", "tf" or None (list of lists).

        Returns:
            ``[batch, max_label_length]`` label ids, -100 at padded positions.

        Example:

        >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
        >>> tokenizer.encode_labels(["AB", "A"])
        [[3, 4], [3, -100]]
        """
        texts = [text] if isinstance(text, str) else text
        ids = [self.encode(t) for t in texts]
        return self.pad_labels(ids, pad_to_multiple_of=pad_to_multiple_of, return_tensors=return_tensors)

    def pad_labels(self, sequences, attention_mask=None, pad_to_multiple_of=None, return_tensors=None):
        """Pads lists of label ids to one length with -100 (e.g. in a training data collator).

        Args:
            sequences: list of id lists (or a padded ``[batch, length]`` array with `attention_mask`).
            attention_mask: optional ``[batch, length]`` mask; positions where it is 0 become -100.
            pad_to_multiple_of: int. Round the padded length up to a multiple of this.
            return_tensors: "np", "tf" or None (list of lists).

        Returns:
            ``[batch, length]`` label ids with -100 in padded positions.
        """
        rows = [_as_id_list(row) for row in sequences]
        if attention_mask is not None:
            masks = [_as_id_list(mask) for mask in attention_mask]
            rows = [[i for i, m in zip(row, mask) if m] for row, mask in zip(rows, masks)]
        length = round_up(max((len(row) for row in rows), default=0), pad_to_multiple_of)
        labels = [row + [LABEL_PAD_ID] * (length - len(row)) for row in rows]
        if return_tensors is None:
            return labels
        return BatchFeature(labels=labels).convert_to_tensors(return_tensors)["labels"]

    # -- decoding -------------------------------------------------------------------------------------

    def decode(
        self,
        token_ids,
        skip_special_tokens=False,
        clean_up_tokenization_spaces=None,
        output_char_offsets=False,
        output_word_offsets=False,
        group_tokens=True,
        spaces_between_special_tokens=False,
    ):
        """CTC-decodes one sequence of ids (e.g. the argmax of the model's logits).

        Args:
            token_ids: list of ints, 1-D numpy array or 1-D `tf.Tensor` of integer ids.
            skip_special_tokens: bool. Drop bos/eos/unk/pad tokens (never the word delimiter).
                Defaults to False.
            clean_up_tokenization_spaces: bool. Remove spaces before punctuation. Defaults to the
                tokenizer's setting (False).
            output_char_offsets: bool. Also return per-character frame offsets. Defaults to False.
            output_word_offsets: bool. Also return per-word frame offsets. Defaults to False.
            group_tokens: bool. Merge consecutive repeated ids (CTC collapse). Defaults to True.
            spaces_between_special_tokens: bool. Join tokens with spaces. Defaults to False.

        Returns:
            The text (str), or a `HubertCTCTokenizerOutput` when offsets are requested. Offsets
            are frame indices; multiply by the model's `inputs_to_logits_ratio / sampling_rate`
            (320 / 16000 for HuBERT) to get seconds.

        Example:

        >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
        >>> out = tokenizer.decode([3, 3, 0, 2, 4], output_word_offsets=True)
        >>> out.text, out.word_offsets
        ('A B', [{'word': 'A', 'start_offset': 0, 'end_offset': 2}, {'word': 'B', 'start_offset': 4, 'end_offset': 5}])
        """
        ids = _as_id_list(token_ids)
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            skipped = self._skipped_tokens()
            tokens = [token for token in tokens if token not in skipped]
        decoded = self._tokens_to_string(
            tokens, group_tokens, spaces_between_special_tokens, output_char_offsets, output_word_offsets
        )
        text = decoded["text"]
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        if output_char_offsets or output_word_offsets:
            return HubertCTCTokenizerOutput(text, decoded["char_offsets"], decoded["word_offsets"])
        return text

    def batch_decode(self, sequences, **kwargs):
        """CTC-decodes a batch: a list of id lists, a 2-D numpy array or a 2-D `tf.Tensor`.

        Args:
            sequences: ``[batch, frames]`` integer ids.
            **kwargs: as in `decode`.

        Returns:
            A list of str, or one `HubertCTCTokenizerOutput` whose fields are lists when offsets
            are requested.

        Example:

        >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
        >>> tokenizer.batch_decode([[3, 3, 4], [4, 0, 4]])
        ['AB', 'BB']
        """
        if _is_tf_tensor(sequences):
            sequences = sequences.numpy()
        if isinstance(sequences, np.ndarray) and sequences.ndim != 2:
            raise ValueError(f"batch_decode expects [batch, frames] ids, got shape {sequences.shape}")
        decoded = [self.decode(sequence, **kwargs) for sequence in sequences]
        if kwargs.get("output_char_offsets") or kwargs.get("output_word_offsets"):
            # As transformers: the fields are those the first result has (an empty sequence has both).
            fields = decoded[0].keys() if decoded else ["text"]
            return HubertCTCTokenizerOutput(
                **{name: [getattr(d, name) for d in decoded] for name in fields}
            )
        return decoded

    # -- the greedy CTC decoding rules (one definition: `decode` and the serving graph both use them) --------

    def _skipped_tokens(self):
        """Tokens `skip_special_tokens=True` drops (before merging repeats): the specials but the word delimiter."""
        return set(self.all_special_tokens) - {self.word_delimiter_token}

    def _piece(self, token):
        """The text one kept token contributes: the word delimiter becomes `replace_word_delimiter_char`."""
        return self.replace_word_delimiter_char if token == self.word_delimiter_token else token

    def ctc_decoding_table(self, num_classes=None, skip_special_tokens=False):
        """The greedy CTC decoding rules of `decode` as per-id arrays, for decoders outside Python.

        `hubert_tf.serving.GreedyCTCDecoder` builds its graph tables from this, so the exported
        SavedModel gives the text `batch_decode` gives. Decoding one row of ids with the table:

        1. drop ids whose `dropped` is set (only with `skip_special_tokens`);
        2. merge runs of equal `merge_ids` (ids sharing a token, e.g. unknown ids -> `unk_token`, merge);
        3. drop `blank` ids (the pad token, the CTC blank);
        4. concatenate `pieces`, strip surrounding whitespace, lower-case if `lower_case`;
        5. apply the `clean_up` (before, after) replacements in order.

        Args:
            num_classes: int. Ids the table must cover (the model's `vocab_size`); it also covers every
                id the tokenizer knows. Defaults to None (the tokenizer's ids only).
            skip_special_tokens: bool. As in `decode`. Defaults to False.

        Returns:
            A `CTCDecodingTable`.

        Example:

        >>> tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3})
        >>> table = tokenizer.ctc_decoding_table(num_classes=7)  # ids 4, 5: the added <s>, </s>
        >>> table.pieces
        ('<pad>', '<unk>', ' ', 'A', '<s>', '</s>', '<unk>')
        >>> table.merge_ids.tolist(), table.blank.tolist()[:2]
        ([0, 1, 2, 3, 4, 5, 1], [True, False])
        """
        known = list(self.decoder) + list(self.added_decoder)
        size = max([int(num_classes or 0)] + [int(index) + 1 for index in known])
        tokens = []
        for index in range(size):
            token = self.convert_ids_to_tokens(index)
            tokens.append("" if token is None else str(token))
        skipped = self._skipped_tokens() if skip_special_tokens else set()
        first_id = {}
        pad_id = self.pad_token_id
        return CTCDecodingTable(
            pieces=tuple(self._piece(token) for token in tokens),
            merge_ids=np.array([first_id.setdefault(token, index) for index, token in enumerate(tokens)], np.int32),
            blank=np.array([token == self.pad_token for token in tokens], bool),
            dropped=np.array([token in skipped for token in tokens], bool),
            pad_id=int(pad_id) if pad_id is not None else 0,
            lower_case=self.do_lower_case,
            clean_up=CLEAN_UP_REPLACEMENTS if self.clean_up_tokenization_spaces else (),
        )

    def _tokens_to_string(self, tokens, group_tokens, spaces_between, output_char_offsets, output_word_offsets):
        if not tokens:
            return {"text": "", "char_offsets": [], "word_offsets": []}
        if group_tokens:
            chars, repetitions = zip(*((token, len(list(run))) for token, run in groupby(tokens)))
        else:
            chars, repetitions = tokens, [1] * len(tokens)
        replacement = self.replace_word_delimiter_char
        processed = [self._piece(c) for c in chars if c != self.pad_token]

        char_offsets = word_offsets = None
        if output_char_offsets or output_word_offsets:
            # Frame span of every grouped token, blanks dropped; end offsets are exclusive.
            ends = np.cumsum(repetitions).tolist()
            spans = [(start, end) for start, end, c in zip([0] + ends[:-1], ends, chars) if c != self.pad_token]
            char_offsets = [
                {"char": char, "start_offset": start, "end_offset": end}
                for char, (start, end) in zip(processed, spans)
            ]
            if output_word_offsets:
                word_offsets = _word_offsets(char_offsets, replacement)
            if not output_char_offsets:
                char_offsets = None

        text = (" " if spaces_between else "").join(processed).strip()
        if self.do_lower_case:
            text = text.lower()
        return {"text": text, "char_offsets": char_offsets, "word_offsets": word_offsets}


def _word_offsets(char_offsets, delimiter_char):
    """Groups character offsets into words separated by the delimiter character."""
    words = []
    in_word = False
    for offset in char_offsets:
        if offset["char"] == delimiter_char:
            in_word = False
        elif in_word:
            words[-1]["word"] += offset["char"]
            words[-1]["end_offset"] = offset["end_offset"]
        else:
            start, end = offset["start_offset"], offset["end_offset"]
            words.append({"word": offset["char"], "start_offset": start, "end_offset": end})
            in_word = True
    return words


# transformers' `clean_up_tokenization`, pair by pair and in its order (`decode` with
# `clean_up_tokenization_spaces`, and the serving graph through `CTCDecodingTable.clean_up`).
CLEAN_UP_REPLACEMENTS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


def clean_up_tokenization(text):
    """Removes the space before punctuation and English contractions, as transformers does."""
    for before, after in CLEAN_UP_REPLACEMENTS:
        text = text.replace(before, after)
    return text


def _as_id_list(token_ids):
    """Returns a python list of ints from a list, numpy array, TF tensor or scalar id."""
    if _is_tf_tensor(token_ids):
        token_ids = token_ids.numpy()
    if isinstance(token_ids, (int, np.integer)):
        return [int(token_ids)]
    array = np.asarray(token_ids)
    if array.size == 0:
        return []
    if array.ndim > 1:
        raise ValueError(f"expected one sequence of ids, got shape {array.shape}; use batch_decode for a batch")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"token ids must be integers, got dtype {array.dtype}; for logits, take the argmax over the "
            "vocabulary axis first"
        )
    return [int(i) for i in array.reshape(-1)]
