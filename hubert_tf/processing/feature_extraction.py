"""Waveform feature extractor: batching, padding and per-utterance normalisation.

`HubertFeatureExtractor` reproduces `transformers.Wav2Vec2FeatureExtractor` (the class every
HuBERT checkpoint on the hub names in its `preprocessor_config.json`) without needing
`transformers` or `torch`. Its outputs match the reference to float32 rounding.

This module also holds the small pieces the tokenizer and processor share: `BatchFeature` (the
dict-like result type), `resolve_pretrained_file` (local directory or hub id -> file path) and the
crash-safe JSON writers (`json_text`, `write_files`). TensorFlow is imported only when
`return_tensors="tf"` is requested.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from hubert_tf.configuration import _as_bool
from hubert_tf.files import MAX_JSON_DEPTH, atomic_files, read_json
from hubert_tf.processing.audio import check_sampling_rate
from hubert_tf.processing.normalize import normalize

logger = logging.getLogger(__name__)

FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"
# transformers >= 5 saves processors as one `processor_config.json` holding a "feature_extractor" entry.
PROCESSOR_FILE = "processor_config.json"
_ACCEPTED_TYPES = ("Wav2Vec2FeatureExtractor", "HubertFeatureExtractor")
_PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
_TENSOR_TYPES = ("np", "tf")


# --------------------------------------------------------------------------------------------------
# Result type and tensor conversion (shared with the tokenizer and processor).
# --------------------------------------------------------------------------------------------------


class BatchFeature(dict):
    """A dict of model inputs that also allows attribute access.

    Values are lists of numpy arrays / python lists (``return_tensors=None``), numpy arrays
    (``"np"``) or ``tf.Tensor`` (``"tf"``).

    Example:

    >>> batch = BatchFeature({"input_values": [np.zeros(3, np.float32)]})
    >>> batch.input_values[0].shape, batch["input_values"][0].dtype
    ((3,), dtype('float32'))
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no field {name!r}; fields: {sorted(self)}") from None

    def convert_to_tensors(self, tensor_type=None):
        """Converts every value in place to `tensor_type` ("np", "tf" or None) and returns self.

        Args:
            tensor_type: str or None. "np" stacks each value into one numpy array, "tf" into one
                `tf.Tensor` (integer ids become int32, as Hugging Face's TF classes did). None
                leaves the values as they are.

        Returns:
            This `BatchFeature`.
        """
        tensor_type = _check_tensor_type(tensor_type)
        if tensor_type is None:
            return self
        for key, value in self.items():
            self[key] = _to_tensor(key, value, tensor_type)
        return self


def _check_tensor_type(tensor_type):
    if tensor_type is None:
        return None
    tensor_type = str(getattr(tensor_type, "value", tensor_type))
    if tensor_type not in _TENSOR_TYPES:
        raise ValueError(
            f"return_tensors={tensor_type!r} is not supported; use 'np' (numpy), 'tf' (TensorFlow) or None."
        )
    return tensor_type


def _to_tensor(key, value, tensor_type):
    if _is_tf_tensor(value):
        value = value.numpy()
    if isinstance(value, (list, tuple)) and value and np.ndim(value[0]) >= 1:
        lengths = {len(row) for row in value}
        if len(lengths) > 1:
            raise ValueError(
                f"Cannot stack {key!r} into one tensor: its sequences have different lengths "
                f"{sorted(lengths)}. Pass padding=True (or 'max_length' with max_length=...)."
            )
    array = np.asarray(value)
    if tensor_type == "np":
        return array
    import tensorflow as tf  # only when TF tensors were asked for

    if array.dtype == np.int64:
        array = array.astype(np.int32)
    return tf.constant(array)


def _is_tf_tensor(value) -> bool:
    # Checks the type name so TensorFlow need not be imported to recognise its tensors.
    module = type(value).__module__ or ""
    return module.startswith("tensorflow") and hasattr(value, "numpy")


# --------------------------------------------------------------------------------------------------
# Local directory or hub id -> file (shared with the tokenizer and processor).
# --------------------------------------------------------------------------------------------------


def resolve_pretrained_file(name_or_path, filename, *, required=True, **hub):
    """Returns the local path of `filename` from a directory or a Hugging Face hub repository.

    The same as `hubert_tf.hub.resolve_file` (kept for the processing modules that import it here).

    Args:
        name_or_path: str or os.PathLike. A local directory, or a hub repository id such as
            ``"facebook/hubert-large-ls960-ft"``.
        filename: str. File name inside the directory / repository.
        required: bool. If False, a missing file returns None instead of raising. Defaults to True.
        **hub: `cache_dir`, `revision`, `token`, `local_files_only`, `subfolder`, `force_download`
            (``HF_HUB_OFFLINE=1`` means `local_files_only`).

    Returns:
        The file's path as a str, or None when `required` is False and the file does not exist.

    Raises:
        OSError: a required file is missing, or the directory / repository cannot be found
            (the message names them).

    Example:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> resolve_pretrained_file(folder, "vocab.json", required=False) is None
    True
    """
    from hubert_tf.hub import resolve_file

    return resolve_file(name_or_path, filename, required=required, **hub)


def json_text(data, source):
    """`data` as the JSON text transformers writes (sorted keys, 2-space indent, trailing newline).

    Serialising happens before any file is touched, so a value that is not JSON data never leaves a
    truncated file. Numpy scalars (e.g. ids from ``np.argsort``, a ``np.float32`` padding value) are
    written as the Python numbers they hold; keys are written as strings, as ``json`` does.

    Args:
        data: dict, list or scalar of JSON data.
        source: str. The file name, for error messages.

    Returns:
        The text (str).

    Raises:
        ValueError: "<source>: <field> ..." naming the first value that is not JSON data, or data
            nested deeper than `hubert_tf.files.MAX_JSON_DEPTH` (which the reader would refuse).

    Example:

    >>> json_text({"b": np.int64(2), "a": [np.float32(0.5)]}, "x.json")
    '{\\n  "a": [\\n    0.5\\n  ],\\n  "b": 2\\n}\\n'
    """
    return json.dumps(_plain(data, source, "", 0), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _plain(value, source, where, depth):
    """A copy of `value` with Python types only (recursion bounded by MAX_JSON_DEPTH)."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{source}: {where or 'the data'} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, np.generic):
        value = value.item()  # numpy scalar -> the Python number (or str) it holds
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ValueError(f"{source}: {where or 'the data'} has a key of type {type(key).__name__}, "
                                 "not a JSON key")
            key = key if isinstance(key, str) else json.dumps(key)
            out[key] = _plain(child, source, f"{where}[{key!r}]" if where else repr(key), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(child, source, f"{where}[{i}]", depth + 1) for i, child in enumerate(value)]
    raise ValueError(f"{source}: {where or 'the data'} is a {type(value).__name__} ({str(value)[:40]!r}), "
                     "not JSON data (str, number, bool, None, list or dict)")


def write_files(save_directory, texts):
    """Writes `{file name: text}` into `save_directory` (created if needed), crash-safe.

    Every file goes through `hubert_tf.files.atomic_files`: written to a temporary sibling, fsync'ed,
    then renamed over its name, so a failure (a full disk, an interrupt) leaves the old files intact.

    Returns:
        The list of written paths, in the order of `texts`.
    """
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise OSError(f"{save_directory} is a file, expected a directory")
    os.makedirs(save_directory, exist_ok=True)
    with atomic_files(save_directory) as files:
        for name, text in texts.items():
            with files.open(name, "w") as handle:
                handle.write(text)
    return [os.path.join(save_directory, name) for name in texts]


# --------------------------------------------------------------------------------------------------
# Padding arguments (the feature extractor and tokenizer accept the same ones).
# --------------------------------------------------------------------------------------------------


def padding_strategy(padding, max_length):
    """Maps ``padding`` (True/False/None/"longest"/"max_length"/"do_not_pad") to one strategy name."""
    if padding is True:
        strategy = "longest"
    elif padding is False or padding is None:
        strategy = "do_not_pad"
    else:
        strategy = str(getattr(padding, "value", padding))
        if strategy not in _PADDING_STRATEGIES:
            choices = ", ".join(map(repr, _PADDING_STRATEGIES))
            raise ValueError(f"padding={padding!r} is not one of True, False, {choices}")
    if strategy == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs max_length=... (the length to pad to)")
    return strategy


def round_up(length, multiple):
    """Rounds `length` up to a multiple of `multiple` (no-op when `multiple` is None)."""
    if multiple is None or length is None or length % multiple == 0:
        return length
    return (length // multiple + 1) * multiple


# --------------------------------------------------------------------------------------------------
# The feature extractor.
# --------------------------------------------------------------------------------------------------


class HubertFeatureExtractor:
    """Turns raw 16 kHz mono waveforms into HuBERT's `input_values` (and `attention_mask`).

    Same behaviour as `transformers.Wav2Vec2FeatureExtractor`: utterances are truncated and
    padded, then (if `do_normalize`) each one is normalised to zero mean and unit variance,
    ``(x - mean) / sqrt(var + 1e-7)`` (`hubert_tf.processing.normalize`), over its valid samples,
    and padded positions are reset to `padding_value`. The statistics cover only the valid samples when an attention mask is
    computed (``return_attention_mask``); without one, the reference normalises the whole padded
    row, padding included, and so does this class (kept for parity with models trained that way).
    All outputs are float32 (`input_values`) and int32 (`attention_mask`).

    Deliberate differences from the reference, all on inputs it mishandles: with
    ``return_tensors=None`` the values are always lists of arrays (the reference sometimes returns a
    stacked or object array); integer samples are cast to float32 (the reference normalises them in
    float64); left padding normalises over the valid samples (the reference's slice takes the
    padding instead); sequences of different lengths with ``return_tensors`` raise a ValueError
    asking for padding (instead of an object array); empty, non-finite or multi-channel audio
    raise a ValueError.

    Args:
        feature_size: int. Values per time step; HuBERT takes raw waveforms, so it must be 1.
            Defaults to 1.
        sampling_rate: int. Sampling rate in Hz the model was trained on. Defaults to 16000.
        padding_value: float. Value written into padded positions. Defaults to 0.0.
        return_attention_mask: bool. Default for `__call__`'s `return_attention_mask`.
            Defaults to False (as the reference; hub configs usually set it).
        do_normalize: bool. Zero-mean unit-variance normalise each utterance. Defaults to True.
        padding_side: str. "right" or "left". Defaults to "right".
        **kwargs: other `preprocessor_config.json` keys (e.g. `feature_extractor_type`,
            `processor_class`); kept and written back by `save_pretrained`.

    Example:

    >>> import numpy as np
    >>> extractor = HubertFeatureExtractor(return_attention_mask=True)
    >>> batch = extractor([np.ones(16000), np.zeros(8000)], sampling_rate=16000,
    ...                   padding=True, return_tensors="np")
    >>> batch.input_values.shape, batch["attention_mask"].sum(axis=1).tolist()
    ((2, 16000), [16000, 8000])
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        return_attention_mask=False,
        do_normalize=True,
        padding_side="right",
        **kwargs,
    ):
        if feature_size != 1:
            raise ValueError(f"feature_size={feature_size}: HuBERT takes raw mono waveforms, so it must be 1")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side={padding_side!r} must be 'right' or 'left'")
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate={sampling_rate!r} must be a positive integer (Hz)")
        check_sampling_rate(sampling_rate, "sampling_rate")  # and in load_audio's range (1 kHz to 384 kHz)
        extractor_type = kwargs.get("feature_extractor_type", "Wav2Vec2FeatureExtractor")
        if extractor_type not in _ACCEPTED_TYPES:
            raise ValueError(
                f"feature_extractor_type={extractor_type!r} is not supported; expected one of {_ACCEPTED_TYPES}"
            )
        if isinstance(padding_value, bool) or not isinstance(padding_value, (int, float, np.integer, np.floating)):
            raise ValueError(f"padding_value must be a number, got {padding_value!r} ({type(padding_value).__name__})")
        if not np.isfinite(padding_value):
            raise ValueError(f"padding_value must be finite, got {padding_value!r}")
        self.feature_size = feature_size
        self.sampling_rate = int(sampling_rate)
        self.padding_value = float(padding_value)  # a Python float: numpy scalars are not JSON
        # Strings such as "false" are refused: bool("false") is True.
        self.return_attention_mask = _as_bool("return_attention_mask", return_attention_mask)
        self.do_normalize = _as_bool("do_normalize", do_normalize)
        self.padding_side = padding_side
        self.extra_config = dict(kwargs)
        self._warned_sampling_rate = False

    # -- configuration ----------------------------------------------------------------------------

    def to_dict(self):
        """Returns the `preprocessor_config.json` content (known fields plus kept unknown keys)."""
        config = dict(self.extra_config)
        config.update(
            do_normalize=self.do_normalize,
            feature_size=self.feature_size,
            padding_side=self.padding_side,
            padding_value=self.padding_value,
            return_attention_mask=self.return_attention_mask,
            sampling_rate=self.sampling_rate,
        )
        config.setdefault("feature_extractor_type", "Wav2Vec2FeatureExtractor")
        return config

    @classmethod
    def from_dict(cls, config, **overrides):
        """Builds an extractor from a `preprocessor_config.json` dict; `overrides` win."""
        config = {**config, **overrides}
        return cls(**config)

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Loads `preprocessor_config.json` from a directory or a hub repository.

        Args:
            name_or_path: str. Local directory or hub id (e.g. "facebook/hubert-large-ls960-ft").
            **kwargs: hub options (`revision`, `cache_dir`, `force_download`, `local_files_only`, `token`,
                `subfolder`; see `hubert_tf.hub.resolve_file`), other transformers loading options (no
                effect), and config values that replace the file's (e.g. ``return_attention_mask=False``);
                any other keyword is a TypeError with a did-you-mean.

        Returns:
            A `HubertFeatureExtractor`.

        Example:

        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = HubertFeatureExtractor(return_attention_mask=True).save_pretrained(folder)
        >>> HubertFeatureExtractor.from_pretrained(folder).return_attention_mask
        True
        """
        from hubert_tf.hub import check_keywords, parameter_names, resolve_file, split_loading_options

        owner = f"{cls.__name__}.from_pretrained"
        hub, _, overrides = split_loading_options(kwargs, owner=owner)
        config = None
        path = resolve_file(name_or_path, FEATURE_EXTRACTOR_FILE, required=False, **hub)
        if path is not None:
            config = read_json(path)
        else:
            path = resolve_file(name_or_path, PROCESSOR_FILE, required=False, **hub)
            if path is not None and isinstance(read_json(path).get("feature_extractor"), dict):
                config = read_json(path)["feature_extractor"]
        if config is None:
            raise FileNotFoundError(
                f"{os.fspath(name_or_path)!r} has no {FEATURE_EXTRACTOR_FILE} (nor a {PROCESSOR_FILE} with a "
                "'feature_extractor' entry)"
            )
        if not isinstance(config, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
        check_keywords(overrides, parameter_names(cls) | set(config), owner=owner, what="feature extractor field")
        return cls.from_dict(config, **overrides)

    def push_to_hub(self, repo_id, **kwargs):
        """Uploads `save_pretrained`'s file to a hub repo in one commit (see `hubert_tf.push.push_to_hub`)."""
        from hubert_tf.push import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def save_pretrained(self, save_directory):
        """Writes `preprocessor_config.json` into `save_directory` (created if needed).

        The JSON is serialised before the file is touched and written atomically, so a failure leaves
        any previous file intact.

        Returns:
            A list with the path of the written file.

        Raises:
            ValueError: a kept config value is not JSON data (naming it); nothing is written.
        """
        return write_files(save_directory, self.files_to_save())

    def files_to_save(self):
        """`{file name: text}` of `save_pretrained`, serialised (raises ValueError before any write)."""
        return {FEATURE_EXTRACTOR_FILE: json_text(self.to_dict(), FEATURE_EXTRACTOR_FILE)}

    def __repr__(self):
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"

    # -- main entry point ---------------------------------------------------------------------------

    def __call__(
        self,
        raw_speech,
        sampling_rate=None,
        padding=False,
        max_length=None,
        truncation=False,
        pad_to_multiple_of=None,
        return_attention_mask=None,
        return_tensors=None,
    ):
        """Batches, pads and normalises one utterance or a batch of utterances.

        Args:
            raw_speech: one mono waveform (1-D array, list of floats, 1-D `tf.Tensor`) or a batch
                (list of those, or a 2-D array ``[batch, samples]``). Must already be at
                `self.sampling_rate`; use `hubert_tf.load_audio` to read and resample.
            sampling_rate: int. Rate of `raw_speech` in Hz; strongly recommended, it is checked
                against the extractor's rate. Defaults to None (not checked, logs a warning).
            padding: True or "longest" (pad to the longest utterance), "max_length" (pad to
                `max_length`) or False / "do_not_pad". Defaults to False, as the reference.
            max_length: int. Length for `padding="max_length"` and for `truncation`.
            truncation: bool. Cut utterances longer than `max_length` (rounded up to
                `pad_to_multiple_of`). Defaults to False.
            pad_to_multiple_of: int. Round the padded length up to a multiple of this.
            return_attention_mask: bool. Defaults to the extractor's `return_attention_mask`.
            return_tensors: "np", "tf" or None (lists of numpy arrays). Defaults to None.

        Returns:
            A `BatchFeature` with `input_values` ``[batch, samples]`` float32 and, if requested,
            `attention_mask` ``[batch, samples]`` int32 (1 = real sample, 0 = padding). A single
            utterance still gets a batch axis of 1.

        Raises:
            ValueError: wrong sampling rate, multi-channel or empty audio, non-finite samples, or
                invalid padding arguments.
        """
        self._check_sampling_rate(sampling_rate)
        speech = self._as_float32_list(raw_speech)
        padded = self.pad(
            {"input_values": speech},
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
        )
        if self.do_normalize:
            # Like the reference: the mask only bounds the statistics when padding was requested.
            mask = padded.get("attention_mask")
            if padding_strategy(padding, max_length) == "do_not_pad":
                mask = None
            padded["input_values"] = self._normalize(padded["input_values"], mask)
        return padded.convert_to_tensors(return_tensors)

    def _check_sampling_rate(self, sampling_rate):
        if sampling_rate is None:
            if not self._warned_sampling_rate:
                logger.warning(
                    "Pass sampling_rate=... to %s() so audio at the wrong rate is caught instead of silently "
                    "giving bad outputs.",
                    type(self).__name__,
                )
                self._warned_sampling_rate = True
            return
        if sampling_rate != self.sampling_rate:
            raise ValueError(
                f"This feature extractor expects audio sampled at {self.sampling_rate} Hz, but got "
                f"sampling_rate={sampling_rate}. Resample first, e.g. "
                f"`hubert_tf.load_audio((audio, {sampling_rate}), sampling_rate={self.sampling_rate})` "
                f"or read the file with `hubert_tf.load_audio(path, sampling_rate={self.sampling_rate})`."
            )

    @staticmethod
    def _as_float32_list(raw_speech):
        """Returns the input as a list of 1-D float32 arrays, validating every utterance."""
        if _is_tf_tensor(raw_speech):
            raw_speech = raw_speech.numpy()
        if isinstance(raw_speech, (list, tuple)):
            if len(raw_speech) == 0:
                raise ValueError("raw_speech is empty: pass a waveform or a non-empty list of waveforms")
            first = raw_speech[0]
            is_batch = isinstance(first, (list, tuple, np.ndarray)) or _is_tf_tensor(first)
            utterances = list(raw_speech) if is_batch else [raw_speech]
        else:
            array = np.asarray(raw_speech)
            if array.ndim == 0:
                raise ValueError(f"raw_speech must be a waveform (1-D) or a batch (2-D), got a scalar {array!r}")
            if array.ndim > 2:
                raise ValueError(
                    f"Only mono audio is supported: got an array of shape {array.shape}. Average the channels "
                    "(or use hubert_tf.load_audio, which does) and pass [batch, samples] or [samples]."
                )
            if array.ndim == 2 and array.shape[1] <= 8 < array.shape[0]:
                raise ValueError(
                    f"raw_speech has shape {array.shape}, which looks like multi-channel audio laid out as "
                    "[samples, channels]; a 2-D array is read as [batch, samples]. Average the channels first, "
                    "e.g. audio.mean(axis=1), or read the file with hubert_tf.load_audio."
                )
            utterances = list(array) if array.ndim == 2 else [array]

        speech = []
        for index, utterance in enumerate(utterances):
            if _is_tf_tensor(utterance):
                utterance = utterance.numpy()
            array = np.asarray(utterance)
            if array.dtype == object or not (
                np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            ):
                raise ValueError(f"utterance {index} has dtype {array.dtype}; expected real-valued samples")
            if array.ndim != 1:
                raise ValueError(
                    f"utterance {index} has shape {array.shape}; only mono (1-D) audio is supported. Average the "
                    "channels first (or use hubert_tf.load_audio, which does)."
                )
            if array.size == 0:
                raise ValueError(f"utterance {index} is empty (0 samples)")
            array = array.astype(np.float32, copy=False)
            if not np.all(np.isfinite(array)):
                bad = int(np.flatnonzero(~np.isfinite(array))[0])
                raise ValueError(f"utterance {index} contains a non-finite sample (first at index {bad}: {array[bad]})")
            speech.append(array)
        return speech

    def pad(
        self,
        processed_features,
        padding=True,
        max_length=None,
        truncation=False,
        pad_to_multiple_of=None,
        return_attention_mask=None,
        return_tensors=None,
    ):
        """Truncates and pads already-extracted `input_values` (e.g. in a data collator).

        Unlike `__call__`, this does not normalise.

        Args:
            processed_features: a dict / `BatchFeature` with "input_values" (list of 1-D arrays), or a
                list of such dicts (one per example). An existing "attention_mask" is ignored and
                rebuilt from the lengths.
            padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors:
                as in `__call__`; `padding` defaults to True here.

        Returns:
            A `BatchFeature` with `input_values` (float32) and optionally `attention_mask` (int32).

        Example:

        >>> import numpy as np
        >>> extractor = HubertFeatureExtractor()
        >>> batch = extractor.pad([{"input_values": np.ones(3)}, {"input_values": np.ones(5)}],
        ...                       return_attention_mask=True, return_tensors="np")
        >>> batch.attention_mask.tolist()
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
        """
        if isinstance(processed_features, (list, tuple)):
            processed_features = {"input_values": [example["input_values"] for example in processed_features]}
        if "input_values" not in processed_features:
            raise ValueError(f"pad() needs 'input_values'; got keys {sorted(processed_features)}")
        values = [np.asarray(v, dtype=np.float32) for v in processed_features["input_values"]]
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask
        strategy = padding_strategy(padding, max_length)
        if truncation:
            if max_length is None:
                raise ValueError("truncation=True needs max_length=... (the length to cut to)")
            limit = round_up(max_length, pad_to_multiple_of)
            values = [v[:limit] for v in values]
        if strategy == "longest":
            max_length = max(len(v) for v in values)
            strategy = "max_length"
        target = round_up(max_length, pad_to_multiple_of)

        input_values, attention_mask = [], []
        for v in values:
            length = len(v)
            missing = target - length if strategy == "max_length" and length < target else 0
            before, after = (0, missing) if self.padding_side == "right" else (missing, 0)
            input_values.append(np.pad(v, (before, after), constant_values=self.padding_value).astype(np.float32))
            attention_mask.append(np.pad(np.ones(length, np.int32), (before, after)))
        result = BatchFeature(input_values=input_values)
        if return_attention_mask:
            result["attention_mask"] = attention_mask
        return result.convert_to_tensors(return_tensors)

    def _normalize(self, input_values, attention_mask):
        """Zero-mean unit-variance per row (`hubert_tf.processing.normalize`, the one definition), over
        the valid samples when a mask is given; padded samples are reset to `padding_value`."""
        normed = []
        for index, vector in enumerate(input_values):
            if attention_mask is None:
                normed.append(normalize(vector))
                continue
            valid = attention_mask[index].astype(bool)
            # The reference slices vector[:length]; using the mask gives the same result for right
            # padding and the correct one for left padding (where the reference's slice is wrong).
            row = np.full(vector.shape, self.padding_value, np.float32)
            row[valid] = normalize(vector[valid])
            normed.append(row)
        return normed
