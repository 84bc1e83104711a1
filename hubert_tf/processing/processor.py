"""One object for both ends of speech recognition: audio -> model inputs, CTC ids -> text.

`HubertProcessor` pairs a `HubertFeatureExtractor` and a `HubertCTCTokenizer` like
`transformers.Wav2Vec2Processor`, and loads / saves the same hub files.
"""

from __future__ import annotations

from hubert_tf.processing.feature_extraction import BatchFeature, HubertFeatureExtractor, write_files
from hubert_tf.processing.tokenization import HubertCTCTokenizer


class HubertProcessor:
    """Feature extractor + CTC tokenizer, loaded and saved together.

    Args:
        feature_extractor: a `HubertFeatureExtractor`.
        tokenizer: a `HubertCTCTokenizer`.

    Example:

    >>> import numpy as np
    >>> vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6}
    >>> processor = HubertProcessor(HubertFeatureExtractor(return_attention_mask=True),
    ...                             HubertCTCTokenizer(vocab))
    >>> batch = processor(audio=[np.ones(400), np.ones(320)], text=["AB", "A"], sampling_rate=16000,
    ...                   padding=True, return_tensors="np")
    >>> batch.input_values.shape, batch.labels.tolist()
    ((2, 400), [[5, 6], [5, -100]])
    >>> processor.batch_decode(np.array([[5, 5, 0, 4, 6], [6, 0, 6, 6, 0]]))
    ['A B', 'BB']
    """

    def __init__(self, feature_extractor, tokenizer):
        if not isinstance(feature_extractor, HubertFeatureExtractor):
            raise TypeError(
                f"feature_extractor must be a HubertFeatureExtractor, got {type(feature_extractor).__name__}"
            )
        if not isinstance(tokenizer, HubertCTCTokenizer):
            raise TypeError(f"tokenizer must be a HubertCTCTokenizer, got {type(tokenizer).__name__}")
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @property
    def sampling_rate(self):
        """The rate in Hz the audio must have (the feature extractor's)."""
        return self.feature_extractor.sampling_rate

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Loads the feature extractor and tokenizer files from a directory or hub repository.

        Reads `preprocessor_config.json` (or transformers 5's `processor_config.json`), `vocab.json`,
        `tokenizer_config.json` and `special_tokens_map.json`.

        Args:
            name_or_path: str. Local directory or hub id, e.g. "facebook/hubert-large-ls960-ft".
            **kwargs: hub options (`revision`, `cache_dir`, `force_download`, `local_files_only`, `token`,
                `subfolder`; see `hubert_tf.hub.resolve_file`); other transformers loading options (no
                effect); feature-extractor or tokenizer arguments (each goes to the component that takes
                it, e.g. ``target_lang="fra"`` for a per-language MMS vocabulary, ``do_normalize=False``);
                any other keyword is a TypeError with a did-you-mean.

        Returns:
            A `HubertProcessor`.

        Example:

        >>> import tempfile
        >>> processor = HubertProcessor(HubertFeatureExtractor(),
        ...                             HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3}))
        >>> folder = tempfile.mkdtemp()
        >>> _ = processor.save_pretrained(folder)
        >>> HubertProcessor.from_pretrained(folder).decode([3, 0, 3])
        'AA'
        """
        hub, extractor, tokenizer, _ = split_processor_kwargs(f"{cls.__name__}.from_pretrained", kwargs)
        return cls(HubertFeatureExtractor.from_pretrained(name_or_path, **hub, **extractor),
                   HubertCTCTokenizer.from_pretrained(name_or_path, **hub, **tokenizer))

    def push_to_hub(self, repo_id, **kwargs):
        """Uploads `save_pretrained`'s files to a hub repo in one commit (see `hubert_tf.push.push_to_hub`).

        Example:

        >>> processor.push_to_hub("me/hubert-tiny-ctc")  # doctest: +SKIP
        """
        from hubert_tf.push import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def save_pretrained(self, save_directory):
        """Writes `preprocessor_config.json`, `vocab.json`, `tokenizer_config.json` and
        `special_tokens_map.json` (loadable by transformers' Wav2Vec2Processor too).

        All four files are serialised before any is touched, then written atomically: a failure (a
        value that is not JSON data, a full disk) leaves the previous files intact.

        Returns:
            A list of the written paths.

        Raises:
            ValueError: a config or vocabulary value is not JSON data (naming it); nothing is written.
        """
        texts = {**self.feature_extractor.files_to_save(), **self.tokenizer.files_to_save()}
        return write_files(save_directory, texts)

    def __call__(
        self,
        audio=None,
        text=None,
        sampling_rate=None,
        padding=False,
        max_length=None,
        truncation=False,
        pad_to_multiple_of=None,
        return_attention_mask=None,
        return_tensors=None,
    ):
        """Prepares audio (model inputs) and/or transcripts (CTC labels).

        Args:
            audio: one mono waveform or a batch (see `HubertFeatureExtractor.__call__`).
            text: a transcript or a list of transcripts, one per waveform.
            sampling_rate: int. Rate of `audio` in Hz, checked against `self.sampling_rate`.
            padding, max_length, truncation, pad_to_multiple_of, return_attention_mask: audio
                padding options, as in `HubertFeatureExtractor.__call__` (they do not apply to text).
            return_tensors: "np", "tf" or None.

        Returns:
            A `BatchFeature`. With audio: `input_values` (+ `attention_mask`), and with text too,
            `labels` ``[batch, max_label_length]`` padded with -100 (ignored by CTC losses). With
            text only: the tokenizer's `input_ids` and `attention_mask`, as transformers does.

        Raises:
            ValueError: neither audio nor text given, or different numbers of waveforms and texts.
        """
        if audio is None and text is None:
            raise ValueError("Pass audio=..., text=... or both")
        if audio is None:
            return self.tokenizer(text, padding=padding, return_tensors=return_tensors)
        inputs = self.feature_extractor(
            audio,
            sampling_rate=sampling_rate,
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
        )
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if len(texts) != len(inputs["input_values"]):
                raise ValueError(
                    f"Got {len(inputs['input_values'])} waveform(s) but {len(texts)} text(s); "
                    "pass one text per waveform"
                )
            inputs["labels"] = self.tokenizer.encode_labels(texts)
        return inputs.convert_to_tensors(return_tensors)

    def pad(self, input_values=None, labels=None, return_tensors=None, **padding_kwargs):
        """Pads pre-extracted features and/or label id lists (e.g. in a training data collator).

        Args:
            input_values: list of normalised 1-D waveforms (outputs of `__call__` per example).
            labels: list of label id lists.
            return_tensors: "np", "tf" or None.
            **padding_kwargs: `padding`, `max_length`, `truncation`, `pad_to_multiple_of`,
                `return_attention_mask` for the audio (see `HubertFeatureExtractor.pad`).

        Returns:
            A `BatchFeature` with `input_values` (+ `attention_mask`) and/or `labels` padded with -100.
        """
        if input_values is None and labels is None:
            raise ValueError("Pass input_values=..., labels=... or both")
        result = BatchFeature()
        if input_values is not None:
            result.update(self.feature_extractor.pad({"input_values": input_values}, **padding_kwargs))
        if labels is not None:
            result["labels"] = self.tokenizer.pad_labels(labels)
        return result.convert_to_tensors(return_tensors)

    def decode(self, token_ids, **kwargs):
        """CTC-decodes one sequence of ids; see `HubertCTCTokenizer.decode`."""
        return self.tokenizer.decode(token_ids, **kwargs)

    def batch_decode(self, sequences, **kwargs):
        """CTC-decodes a batch of id sequences; see `HubertCTCTokenizer.batch_decode`."""
        return self.tokenizer.batch_decode(sequences, **kwargs)


def split_processor_kwargs(owner, kwargs, extra=()):
    """Splits a processor's `from_pretrained` keywords (the one place for both processor classes).

    Args:
        owner: named in messages ("HubertProcessor.from_pretrained").
        kwargs: the keywords given.
        extra: further names the caller takes itself (the LM decoder's options).

    Returns:
        (hub options, feature-extractor keywords, tokenizer keywords, `extra` keywords); a name both
        components take (`padding_side`) goes to both.

    Raises:
        TypeError: a keyword no component takes and not a loading option (with a did-you-mean).
    """
    from hubert_tf.hub import check_keywords, parameter_names, split_loading_options

    hub, own, rest = split_loading_options(kwargs, handled=("target_lang",), owner=owner)
    extractor_keys = parameter_names(HubertFeatureExtractor)
    tokenizer_keys = parameter_names(HubertCTCTokenizer, skip=("vocab",))
    check_keywords(rest, extractor_keys | tokenizer_keys | set(extra), owner=owner, what="processor argument")
    pick = lambda keys: {k: v for k, v in rest.items() if k in keys}  # noqa: E731
    tokenizer = {**pick(tokenizer_keys), **({} if own.get("target_lang") is None else own)}
    return hub, pick(extractor_keys), tokenizer, pick(set(extra) - extractor_keys - tokenizer_keys)
