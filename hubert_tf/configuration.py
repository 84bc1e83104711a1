"""`HubertConfig` and `Wav2Vec2Config`: every field of the reference `transformers.HubertConfig` /
`Wav2Vec2Config`, same names and defaults (one set of layers builds both families)."""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
import operator
import os
from typing import Any

from .activations import ACTIVATION_NAMES

CONFIG_NAME = "config.json"
# The checkpoints `transcribe` / `extract_features` and the `hubert-tf` commands use when given no model
# (defined here, in a module without TensorFlow, so `hubert-tf --help` can show them).
DEFAULT_ASR_MODEL = "facebook/hubert-large-ls960-ft"
DEFAULT_FEATURES_MODEL = "facebook/hubert-base-ls960"

# Fields of the reference config, in its order, with its defaults.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "activation_dropout": 0.1,
    "attention_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.1,
    "layerdrop": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "conv_dim": (512, 512, 512, 512, 512, 512, 512),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_bias": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "conv_pos_batch_norm": False,
    "do_stable_layer_norm": False,
    "apply_spec_augment": True,
    "mask_time_prob": 0.05,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_feature_prob": 0.0,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "use_weighted_layer_sum": False,
    "classifier_proj_size": 256,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

_PROBABILITIES = (
    "hidden_dropout",
    "activation_dropout",
    "attention_dropout",
    "feat_proj_dropout",
    "final_dropout",
    "layerdrop",
    "mask_time_prob",
    "mask_feature_prob",
)
_TUPLES = ("conv_dim", "conv_stride", "conv_kernel")
# Keys the reference writes but derives itself; they are recomputed, never trusted from the file.
_DERIVED = ("num_feat_extract_layers",)
_CTC_REDUCTIONS = ("sum", "mean")
_FEAT_EXTRACT_NORMS = ("group", "layer")
_BOOLEANS = tuple(key for key, value in _DEFAULTS.items() if isinstance(value, bool))
_STRINGS = ("hidden_act", "feat_extract_norm", "feat_extract_activation", "ctc_loss_reduction")
_OPTIONAL_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id")

# Size limits. A config file is small and untrusted: without limits `num_hidden_layers: 100000` or a
# million-entry `conv_dim` builds for hours, and a huge `num_labels` fills memory before any weight is
# read. Each limit is far above the largest real model (hubert-xlarge and MMS-1b: 48 layers, hidden 1280,
# ffn 5120, 7 convs of 512 channels, positional kernel 128, ~1e9 parameters).
# Integer fields: name -> (smallest, largest) allowed value.
_INT_RANGES = {
    "vocab_size": (1, 1 << 20),
    "hidden_size": (1, 16384),
    "num_hidden_layers": (0, 256),
    "num_attention_heads": (1, 1024),
    "intermediate_size": (1, 65536),
    "num_conv_pos_embeddings": (1, 4096),
    "num_conv_pos_embedding_groups": (1, 16384),
    "mask_time_length": (1, 1 << 20),
    "mask_time_min_masks": (0, 1 << 20),
    "mask_feature_length": (1, 1 << 20),
    "mask_feature_min_masks": (0, 1 << 20),
    "classifier_proj_size": (1, 65536),
}
_TUPLE_RANGES = {"conv_dim": (1, 16384), "conv_stride": (1, 1024), "conv_kernel": (1, 1024)}
MAX_CONV_LAYERS = 32  # len(conv_dim); real models have 7
MAX_LABELS = 1 << 20  # num_labels / entries of id2label
MAX_PARAMETERS = 4_000_000_000  # estimated trainable parameters (16 GB of float32); 4x the largest real model
MAX_EXTRA_DEPTH = 32  # nesting of unknown keys' values (hub extras are at most 2 levels deep)
_REPR_LIMIT = 80  # characters of a bad value quoted in an error message


def _short(value: Any) -> str:
    """repr(value), cut to one short line (a million-entry conv_dim must not become the message)."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 16:
        text = f"{type(value).__name__} of {len(value)} entries"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _described(value: Any) -> str:
    return f"{_short(value)} (of type {type(value).__name__})"


def _as_int(name: str, value: Any) -> int:
    """An int from an int-like value (numpy integers included); bools, floats and strings refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {_described(value)}")
    return operator.index(value)


def _as_bool(name: str, value: Any) -> bool:
    """A bool from True/False (numpy bools included); the strings "true"/"false", 0/1 and None refused,
    since any non-empty string is truthy and would silently select another architecture."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ValueError(f"{name} must be true or false (a JSON boolean), got {_described(value)}")


def _as_float(name: str, value: Any) -> float:
    """A finite float from a real number; bools, strings, NaN and infinities refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {_described(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _check_json_data(name: str, value: Any) -> None:
    """Unknown keys are written back by `save_pretrained`: they must be JSON data nested at most
    MAX_EXTRA_DEPTH deep. Walked with an explicit stack (no recursion on attacker-controlled depth)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            raise ValueError(f"config field {name!r} is nested deeper than {MAX_EXTRA_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise ValueError(f"config field {name!r} has a key of type {type(key).__name__}, not JSON data")
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif item is not None and type(item) not in (str, bool, int, float):
            raise ValueError(f"config field {name!r} holds a {type(item).__name__}, not JSON data "
                             "(str, number, bool, None, list or dict)")


def _coerce(key: str, value: Any) -> Any:
    """A reference field's value in its Python type, or ValueError naming the field and the value."""
    if key in _W2V_OPTIONAL_INTS:
        return None if value is None else _as_int(key, value)
    if key in _TUPLES or key in _W2V_TUPLES:
        if type(value).__name__ == "ndarray" and value.ndim == 1:
            value = value.tolist()  # without importing numpy here
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list of integers, got {_described(value)}")
        if len(value) > MAX_CONV_LAYERS:
            raise ValueError(f"{key} has {len(value)} entries, more than the limit of {MAX_CONV_LAYERS} conv layers")
        return tuple(_as_int(key, v) for v in value)
    if key in _BOOLEANS or key in _W2V_BOOLEANS:
        return _as_bool(key, value)
    if key in _INT_RANGES or key in _W2V_INT_RANGES:
        return _as_int(key, value)
    if key in _OPTIONAL_TOKEN_IDS:
        return None if value is None else _as_int(key, value)
    if key in _STRINGS:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {_described(value)}")
        return value
    return _as_float(key, value)  # every other reference field is a float


def _check_label_mapping(name: str, value: Any, what: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping of {what}, got {_described(value)}")
    if len(value) > MAX_LABELS:
        raise ValueError(f"{name} has {len(value)} entries, more than the limit of {MAX_LABELS}")


def _id2label(value: Any) -> dict[int, str]:
    _check_label_mapping("id2label", value, "class ids to names")
    out = {}
    for key, name in value.items():
        try:
            index = int(key) if isinstance(key, str) else _as_int("id2label", key)
        except ValueError:
            raise ValueError(f"id2label keys must be integers, got {_short(key)}") from None
        if not isinstance(name, str):
            raise ValueError(f"id2label values must be strings, got {_described(name)} for id {index}")
        out[index] = name
    return out


def _label2id(value: Any) -> dict[str, int]:
    _check_label_mapping("label2id", value, "names to class ids")
    out = {}
    for name, index in value.items():
        if not isinstance(name, str):
            raise ValueError(f"label2id keys must be strings, got {_described(name)}")
        out[name] = _as_int(f"label2id[{_short(name)}]", index)
    return out


class HubertConfig:
    """Configuration of a HuBERT model, field for field the reference `transformers.HubertConfig`.

    Every hub `config.json` with `"model_type": "hubert"` loads unchanged; keys this class does not
    know (e.g. `architectures`, `torch_dtype`, `mask_channel_prob`) are kept and written back.
    The defaults give the facebook/hubert-base-ls960 architecture.

    Args:
        vocab_size: int. Size of the CTC vocabulary (`lm_head` outputs). Defaults to 32.
        hidden_size: int. Width of the Transformer encoder. Defaults to 768.
        num_hidden_layers: int. Number of encoder layers. Defaults to 12.
        num_attention_heads: int. Attention heads per layer. Defaults to 12.
        intermediate_size: int. Width of the feed-forward layer. Defaults to 3072.
        hidden_act: str. Feed-forward activation ("gelu", "relu", "gelu_new", ...). Defaults to "gelu".
        hidden_dropout, activation_dropout, attention_dropout, feat_proj_dropout, final_dropout:
            float. Dropout rates (training only).
        layerdrop: float. Probability to skip each encoder layer during training. Defaults to 0.1.
        feat_proj_layer_norm: bool. Layer norm before the feature projection. Defaults to True.
        feat_extract_norm: str. "group" (group norm after the first conv only) or "layer" (layer norm
            after every conv). Defaults to "group".
        feat_extract_activation: str. Activation of the conv feature encoder. Defaults to "gelu".
        conv_dim, conv_stride, conv_kernel: tuple of int. Channels, strides and kernel sizes of the conv
            feature encoder, one per layer.
        conv_bias: bool. Whether the feature-encoder convs have a bias. Defaults to False.
        num_conv_pos_embeddings: int. Kernel size of the positional conv. Defaults to 128.
        num_conv_pos_embedding_groups: int. Groups of the positional conv. Defaults to 16.
        conv_pos_batch_norm: bool. Batch norm before a plain positional conv instead of weight
            normalisation (mHuBERT-25Hz). Defaults to False.
        do_stable_layer_norm: bool. Pre-LN ("stable layer norm") encoder, as in the large models.
            Defaults to False.
        apply_spec_augment: bool. SpecAugment on the projected features during training.
        mask_time_prob, mask_time_length, mask_time_min_masks: SpecAugment time masking.
        mask_feature_prob, mask_feature_length, mask_feature_min_masks: SpecAugment feature masking.
        ctc_loss_reduction: str. "sum" or "mean" (each loss divided by its target length, then
            averaged). Defaults to "sum".
        ctc_zero_infinity: bool. Zero infinite CTC losses and their gradients. Defaults to False.
        use_weighted_layer_sum: bool. Classification head over a softmax-weighted sum of all hidden
            states. Defaults to False.
        classifier_proj_size: int. Projection size before pooling in classification. Defaults to 256.
        pad_token_id: int. Also the CTC blank. Defaults to 0.
        **kwargs: any other field (kept, and written back by `save_pretrained`).

    Example:

    >>> from hubert_tf import HubertConfig
    >>> config = HubertConfig(num_hidden_layers=2)
    >>> config.inputs_to_logits_ratio
    320
    """

    model_type = "hubert"
    # The reference fields of this model type, with their defaults (a subclass for another type lists
    # its own); and fields the reference type does not have, fixed to what its layers do.
    _fields: dict[str, Any] = _DEFAULTS
    _fixed: dict[str, Any] = {}

    def __init__(self, **kwargs: Any):
        for key in _DERIVED:
            kwargs.pop(key, None)
        kwargs.pop("model_type", None)
        for key, value in self._fixed.items():
            given = kwargs.pop(key, value)
            if given != value:
                raise ValueError(f"{key} must be {value!r} for model_type {self.model_type!r} (its layers "
                                 f"always work that way), got {_short(given)}")
            setattr(self, key, value)
        for key, default in self._fields.items():
            setattr(self, key, _coerce(key, kwargs.pop(key, default)))
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        if num_labels is not None:
            num_labels = _as_int("num_labels", num_labels)
            if not 1 <= num_labels <= MAX_LABELS:
                raise ValueError(f"num_labels must be in [1, {MAX_LABELS}], got {num_labels}")
        if id2label is None:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels if num_labels is not None else 2)}
        self.id2label = _id2label(id2label)
        self.label2id = _label2id(label2id) if label2id is not None else {v: k for k, v in self.id2label.items()}
        if num_labels is not None and num_labels != len(self.id2label):
            raise ValueError(f"num_labels={num_labels} does not match id2label with {len(self.id2label)} entries")
        # Unknown keys (hub extras such as `architectures`, fields of newer versions) are kept.
        for key, value in kwargs.items():
            _check_json_data(key, value)
        self._extra = dict(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.validate()

    # ----------------------------------------------------------------------------------- derived
    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Audio samples per output frame: the product of the conv strides (320 for HuBERT)."""
        return functools.reduce(operator.mul, self.conv_stride, 1)

    @property
    def receptive_field(self) -> int:
        """Samples needed for one output frame (400 for HuBERT at 16 kHz)."""
        field = 1
        for kernel, stride in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            field = (field - 1) * stride + kernel
        return field

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    # ----------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raises a one-line ValueError naming the first field that is invalid (type, range, size limit
        or consistency with the other fields); int-like values (numpy integers) become Python ints."""
        for key in self._fields:  # types again: fields may have been assigned after construction
            setattr(self, key, _coerce(key, getattr(self, key)))
        for key, value in self._fixed.items():
            if getattr(self, key) != value:
                raise ValueError(f"{key} must be {value!r} for model_type {self.model_type!r}, "
                                 f"got {_short(getattr(self, key))}")
        n = len(self.conv_dim)
        if n < 1:
            raise ValueError("conv_dim must have at least one entry (one per conv layer)")
        if len(self.conv_stride) != n or len(self.conv_kernel) != n:
            raise ValueError(
                "conv_dim, conv_stride and conv_kernel must have the same length, got "
                f"len(conv_dim)={n}, len(conv_stride)={len(self.conv_stride)}, "
                f"len(conv_kernel)={len(self.conv_kernel)}"
            )
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
        for name, (low, high) in _TUPLE_RANGES.items():
            for value in getattr(self, name):
                if not low <= value <= high:
                    raise ValueError(f"{name} entries must be in [{low}, {high}], got {_short(getattr(self, name))}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_conv_pos_embedding_groups "
                f"({self.num_conv_pos_embedding_groups})"
            )
        for name, choices in (("feat_extract_norm", _FEAT_EXTRACT_NORMS), ("ctc_loss_reduction", _CTC_REDUCTIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {_short(getattr(self, name))}")
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in ACTIVATION_NAMES:
                raise ValueError(f"{name} {_short(getattr(self, name))} is not supported; "
                                 f"use one of {sorted(ACTIVATION_NAMES)}")
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not 0.0 < self.layer_norm_eps < 1.0:
            # NaN or <= 0 gives NaN (or inf) from every layer norm of a model that otherwise loads.
            raise ValueError(f"layer_norm_eps must be a small positive number in (0, 1), got {self.layer_norm_eps!r}")
        if self.initializer_range < 0.0:
            raise ValueError(f"initializer_range must be >= 0, got {self.initializer_range!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be in [0, vocab_size={self.vocab_size})")
        for name in ("bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or null, got {value}")
        if len(self.id2label) > MAX_LABELS:
            raise ValueError(f"id2label has {len(self.id2label)} entries, more than the limit of {MAX_LABELS}")
        parameters = self.estimate_num_parameters()
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"this config describes a model of about {parameters:.3g} parameters, more than the "
                             f"limit of {MAX_PARAMETERS:.3g} (hidden_size={self.hidden_size}, num_hidden_layers="
                             f"{self.num_hidden_layers}, intermediate_size={self.intermediate_size})")

    def estimate_num_parameters(self) -> int:
        """Trainable parameters of the largest model this config builds: the base model plus a CTC head
        (`vocab_size`) and a classification head (`num_labels`), computed from the sizes alone.

        Exact for `TFHubertModel` plus whichever head is used (the other head's term is the surplus).

        Example:

        >>> HubertConfig().estimate_num_parameters() - 24_608 - 197_378  # minus the two heads
        94371712
        """
        h, ffn = self.hidden_size, self.intermediate_size
        total, channels = 0, 1
        for index, (out, kernel) in enumerate(zip(self.conv_dim, self.conv_kernel)):
            total += kernel * channels * out + (out if self.conv_bias else 0)
            if self.feat_extract_norm == "layer" or index == 0:
                total += 2 * out  # layer norm of every conv, or the first conv's group norm
            channels = out
        total += (2 * channels if self.feat_proj_layer_norm else 0) + channels * h + h  # feature projection
        if self.mask_time_prob > 0 or self.mask_feature_prob > 0:
            total += h  # masked_spec_embed
        kernel = self.num_conv_pos_embeddings
        total += h * (h // self.num_conv_pos_embedding_groups) * kernel + h  # positional conv
        total += 2 * h if self.conv_pos_batch_norm else kernel  # its batch norm, or weight norm's g
        total += 2 * h  # encoder layer norm
        total += self.num_hidden_layers * (4 * h * h + 2 * h * ffn + 9 * h + ffn)  # attention, ffn, 2 norms
        total += h * self.vocab_size + self.vocab_size  # CTC head
        labels, proj = len(self.id2label), self.classifier_proj_size
        total += h * proj + proj + proj * labels + labels  # classification head
        if self.use_weighted_layer_sum:
            total += self.num_hidden_layers + 1
        total += self._extra_parameters()
        return int(total)

    def _extra_parameters(self) -> int:
        """Parameters of layers only another model type has (none for HuBERT)."""
        return 0

    # ----------------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields (reference ones, derived ones and kept extras) as JSON-ready values."""
        out: dict[str, Any] = {}
        for key in self._fields:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        out["num_feat_extract_layers"] = self.num_feat_extract_layers
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        for key in self._extra:
            out[key] = copy.deepcopy(getattr(self, key))
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **overrides: Any) -> "HubertConfig":
        model_type = config_dict.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            hint = ""
            if model_type in CONFIG_CLASSES:
                hint = (f"; load it with {CONFIG_CLASSES[model_type].__name__} (or `load_config`, which "
                        "picks the class from model_type)")
            raise ValueError(f"config has model_type {model_type!r}, expected {cls.model_type!r}{hint}")
        merged = dict(config_dict)
        merged.update(overrides)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "HubertConfig":
        """Reads a `config.json` (size- and depth-limited by `hubert_tf.files.read_json`).

        Raises:
            OSError: the file cannot be read (or is a directory).
            ValueError: "<path>: ..." for invalid JSON, a non-object, or an invalid field.
        """
        from .files import read_json

        path = os.fspath(path)
        if os.path.isdir(path):
            raise OSError(f"{path} is a directory, expected a config.json file")
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data, **overrides)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "HubertConfig":
        """Loads `config.json` from a directory, a file, or a hub repo id.

        Args:
            pretrained_model_name_or_path: a directory holding `config.json`, the file itself, or a
                hub repo id such as "facebook/hubert-base-ls960" (see `TFHubertPreTrainedModel.from_pretrained`
                for how paths and hub ids are told apart and how an unreachable hub fails).
            **kwargs: `revision`, `cache_dir`, `force_download`, `local_files_only`, `token`, `subfolder`
                for the hub; other transformers loading options (`hubert_tf.hub.LOADING_OPTIONS`) have no
                effect; anything else overrides a config field (a keyword that is neither is a TypeError
                with a did-you-mean). `return_unused_kwargs=True` returns `(config, {})` as transformers.

        Example:

        >>> config = HubertConfig.from_pretrained("tests/fixtures/base_style", mask_time_prob=0.0)  # doctest: +SKIP
        >>> config.mask_time_prob  # doctest: +SKIP
        0.0
        """
        owner = f"{cls.__name__}.from_pretrained"
        kwargs = dict(kwargs)
        return_unused = kwargs.pop("return_unused_kwargs", False)
        path, overrides = _config_file(pretrained_model_name_or_path, kwargs, owner)
        config = apply_overrides(cls.from_json_file(path), overrides, owner)
        # transformers' (config, unused kwargs): none here, an unknown keyword is a TypeError.
        return (config, {}) if return_unused else config

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Writes `config.json` into `save_directory` (created if needed); returns the file path."""
        from .files import atomic_write

        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise OSError(f"{save_directory} is a file, expected a directory")
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        with atomic_write(path, "w") as f:
            f.write(self.to_json_string())
        return path

    def copy(self, **overrides: Any) -> "HubertConfig":
        return type(self).from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HubertConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _config_file(name_or_path, kwargs: dict, owner: str) -> tuple[str, dict]:
    """(local path of the `config.json` of a directory, file or hub id; the keywords that are not loading
    options, i.e. config overrides)."""
    from .hub import resolve_file, split_loading_options

    hub_kwargs, _, overrides = split_loading_options(kwargs, owner=owner)
    path = os.path.expanduser(os.fspath(name_or_path))
    if os.path.isfile(path) and not hub_kwargs.get("subfolder"):
        return path, overrides
    return resolve_file(name_or_path, CONFIG_NAME, **hub_kwargs), overrides


def apply_overrides(config: "HubertConfig", overrides: dict, owner: str, extra_keys=()) -> "HubertConfig":
    """`config` with `overrides` applied; TypeError (did-you-mean) for a key that is not one of its fields,
    of its file's extra keys, of `extra_keys` (what a model head reads), or of transformers' generic
    config attributes."""
    if not overrides:
        return config
    from .hub import GENERIC_CONFIG_KEYS, check_keywords

    allowed = set(config.to_dict()) | {"num_labels"} | GENERIC_CONFIG_KEYS | set(extra_keys)
    check_keywords(overrides, allowed, owner=owner, what="config field")
    return config.copy(**overrides)


# ----------------------------------------------------------------------------------- wav2vec 2.0
# Fields of the reference `transformers.Wav2Vec2Config`, in its order, with its defaults. The
# quantizer, contrastive, x-vector and conv-adapter fields are checked and written back; inference
# uses none of them.
_WAV2VEC2_DEFAULTS: dict[str, Any] = {}
for _key, _value in _DEFAULTS.items():
    if _key in ("feat_proj_layer_norm", "conv_pos_batch_norm"):
        continue  # not wav2vec2 fields: its feature projection always has its layer norm, its pos conv weight norm
    _WAV2VEC2_DEFAULTS[_key] = _value
    if _key == "feat_proj_dropout":
        _WAV2VEC2_DEFAULTS["feat_quantizer_dropout"] = 0.0
    elif _key == "mask_feature_min_masks":
        _WAV2VEC2_DEFAULTS.update(
            num_codevectors_per_group=320, num_codevector_groups=2, contrastive_logits_temperature=0.1,
            num_negatives=100, codevector_dim=256, proj_codevector_dim=256, diversity_loss_weight=0.1,
        )
    elif _key == "classifier_proj_size":
        _WAV2VEC2_DEFAULTS.update(
            tdnn_dim=(512, 512, 512, 512, 1500), tdnn_kernel=(5, 3, 3, 1, 1), tdnn_dilation=(1, 2, 3, 1, 1),
            xvector_output_dim=512,
        )
_WAV2VEC2_DEFAULTS.update(
    add_adapter=False, adapter_kernel_size=3, adapter_stride=2, num_adapter_layers=3, output_hidden_size=None,
    adapter_attn_dim=None,
)
_W2V_TUPLES = ("tdnn_dim", "tdnn_kernel", "tdnn_dilation")
_W2V_BOOLEANS = ("add_adapter",)
_W2V_OPTIONAL_INTS = ("adapter_attn_dim",)
_W2V_INT_RANGES = {
    "num_codevectors_per_group": (1, 1 << 16),
    "num_codevector_groups": (1, 1024),
    "num_negatives": (0, 1 << 16),
    "codevector_dim": (1, 65536),
    "proj_codevector_dim": (1, 65536),
    "xvector_output_dim": (1, 65536),
    "adapter_kernel_size": (1, 1024),
    "adapter_stride": (1, 1024),
    "num_adapter_layers": (0, 256),
    "output_hidden_size": (1, 16384),
}
MAX_ADAPTER_ATTN_DIM = 65536


class Wav2Vec2Config(HubertConfig):
    """Configuration of a wav2vec 2.0 / XLS-R / MMS model, field for field the reference
    `transformers.Wav2Vec2Config`; builds the same Keras layers as `HubertConfig`.

    Every hub `config.json` with `"model_type": "wav2vec2"` loads unchanged. Besides the HuBERT fields
    (see `HubertConfig`; wav2vec2 has no `feat_proj_layer_norm` or `conv_pos_batch_norm`: its feature
    projection always has its layer norm and its positional conv is weight-normed):

    Args:
        adapter_attn_dim: optional int. Width of the per-language attention adapters of MMS (one after
            every stable-layer-norm encoder layer; see `TFWav2Vec2ForCTC.load_adapter`). Defaults to None.
        add_adapter: bool. The strided conv adapter of speech-to-text encoders (not supported by the
            models yet: they refuse such a config). Defaults to False.
        adapter_kernel_size, adapter_stride, num_adapter_layers, output_hidden_size: that conv adapter.
        num_codevectors_per_group, num_codevector_groups, contrastive_logits_temperature, num_negatives,
            codevector_dim, proj_codevector_dim, diversity_loss_weight, feat_quantizer_dropout:
            pretraining (quantizer / `project_q` / `project_hid`) fields, kept but unused for inference.
        tdnn_dim, tdnn_kernel, tdnn_dilation, xvector_output_dim: x-vector head fields, kept, unused.

    Example:

    >>> from hubert_tf import Wav2Vec2Config
    >>> config = Wav2Vec2Config(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)
    >>> config.model_type, config.feat_proj_layer_norm, config.output_hidden_size
    ('wav2vec2', True, 768)
    """

    model_type = "wav2vec2"
    _fields = _WAV2VEC2_DEFAULTS
    _fixed = {"feat_proj_layer_norm": True, "conv_pos_batch_norm": False}

    def __init__(self, **kwargs: Any):
        if kwargs.get("output_hidden_size") is None:  # the reference's `output_hidden_size or hidden_size`
            kwargs["output_hidden_size"] = kwargs.get("hidden_size", _DEFAULTS["hidden_size"])
        super().__init__(**kwargs)

    def validate(self) -> None:
        super().validate()
        for name, (low, high) in _W2V_INT_RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
        for name in _W2V_TUPLES:
            if len(getattr(self, name)) > MAX_CONV_LAYERS:
                raise ValueError(f"{name} has more than {MAX_CONV_LAYERS} entries")
        if self.adapter_attn_dim is not None and not 1 <= self.adapter_attn_dim <= MAX_ADAPTER_ATTN_DIM:
            raise ValueError(f"adapter_attn_dim must be null or in [1, {MAX_ADAPTER_ATTN_DIM}], "
                             f"got {self.adapter_attn_dim}")
        if not 0.0 <= self.feat_quantizer_dropout <= 1.0:
            raise ValueError(f"feat_quantizer_dropout must be a probability in [0, 1], got {self.feat_quantizer_dropout!r}")

    @property
    def has_attention_adapters(self) -> bool:
        """Whether the encoder layers carry MMS attention adapters (only stable-layer-norm layers do,
        as in the reference)."""
        return self.adapter_attn_dim is not None and self.do_stable_layer_norm

    def _extra_parameters(self) -> int:
        h, a = self.hidden_size, self.adapter_attn_dim
        total = self.num_hidden_layers * (2 * h + 2 * h * a + a + h) if self.has_attention_adapters else 0
        if self.add_adapter:
            o = self.output_hidden_size
            if o != h:
                total += h * o + 3 * o
            total += self.num_adapter_layers * (2 * o * o * self.adapter_kernel_size + 2 * o)
        return total


# model_type -> config class, for `load_config` / `config_from_dict` and for error messages.
CONFIG_CLASSES: dict[str, type] = {"hubert": HubertConfig, "wav2vec2": Wav2Vec2Config}


def config_class(model_type: Any) -> type:
    """The config class of `model_type` ("hubert" or "wav2vec2"); ValueError for any other."""
    if model_type not in CONFIG_CLASSES:
        raise ValueError(f"model_type {_short(model_type)} is not supported; supported: {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[model_type]


def config_from_dict(config_dict: dict[str, Any], **overrides: Any) -> HubertConfig:
    """A `HubertConfig` or `Wav2Vec2Config`, by the dict's `model_type` (HuBERT when it has none).

    Example:

    >>> type(config_from_dict({"model_type": "wav2vec2"})).__name__
    'Wav2Vec2Config'
    """
    return config_class(config_dict.get("model_type", "hubert")).from_dict(config_dict, **overrides)


def load_config(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> HubertConfig:
    """`from_pretrained` of the config class the file's `model_type` names (HuBERT when absent).

    Args:
        pretrained_model_name_or_path: a directory holding `config.json`, the file itself, or a hub id.
        **kwargs: hub options and field overrides, as `HubertConfig.from_pretrained`.

    Example:

    >>> load_config("tests/fixtures/base_style").model_type  # doctest: +SKIP
    'hubert'
    """
    from .files import read_json

    path, overrides = _config_file(pretrained_model_name_or_path, kwargs, "load_config")
    data = read_json(path) if not os.path.isdir(path) else None
    model_type = data.get("model_type", "hubert") if isinstance(data, dict) else "hubert"
    try:
        cls = config_class(model_type)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return apply_overrides(cls.from_json_file(path), overrides, "load_config")
