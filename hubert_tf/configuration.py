"""`HubertConfig`: every field of the reference `transformers.HubertConfig`, same names and defaults."""

from __future__ import annotations

import copy
import functools
import json
import operator
import os
from typing import Any

from .activations import ACTIVATION_NAMES

CONFIG_NAME = "config.json"

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

    def __init__(self, **kwargs: Any):
        for key in _DERIVED:
            kwargs.pop(key, None)
        kwargs.pop("model_type", None)
        for key, default in _DEFAULTS.items():
            value = kwargs.pop(key, default)
            if key in _TUPLES and value is not None:
                value = tuple(value)
            setattr(self, key, value)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        if id2label is None:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels if num_labels is not None else 2)}
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.label2id = dict(label2id) if label2id is not None else {v: k for k, v in self.id2label.items()}
        if num_labels is not None and num_labels != len(self.id2label):
            raise ValueError(f"num_labels={num_labels} does not match id2label with {len(self.id2label)} entries")
        # Unknown keys (hub extras such as `architectures`, fields of newer versions) are kept.
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
        """Raises ValueError naming the first field that is invalid."""
        n = len(self.conv_dim)
        if len(self.conv_stride) != n or len(self.conv_kernel) != n:
            raise ValueError(
                "conv_dim, conv_stride and conv_kernel must have the same length, got "
                f"len(conv_dim)={n}, len(conv_stride)={len(self.conv_stride)}, "
                f"len(conv_kernel)={len(self.conv_kernel)}"
            )
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "num_hidden_layers" else 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in _TUPLES:
            for value in getattr(self, name):
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must hold positive integers, got {getattr(self, name)!r}")
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
        if self.feat_extract_norm not in _FEAT_EXTRACT_NORMS:
            raise ValueError(f"feat_extract_norm must be one of {_FEAT_EXTRACT_NORMS}, got {self.feat_extract_norm!r}")
        if self.ctc_loss_reduction not in _CTC_REDUCTIONS:
            raise ValueError(f"ctc_loss_reduction must be one of {_CTC_REDUCTIONS}, got {self.ctc_loss_reduction!r}")
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in ACTIVATION_NAMES:
                raise ValueError(f"{name} {getattr(self, name)!r} is not supported; use one of {sorted(ACTIVATION_NAMES)}")
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("mask_time_length", "mask_feature_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be in [0, vocab_size={self.vocab_size})")

    # ----------------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields (reference ones, derived ones and kept extras) as JSON-ready values."""
        out: dict[str, Any] = {}
        for key in _DEFAULTS:
            value = getattr(self, key)
            out[key] = list(value) if key in _TUPLES else value
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
            raise ValueError(f"config has model_type {model_type!r}, expected {cls.model_type!r}")
        merged = dict(config_dict)
        merged.update(overrides)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "HubertConfig":
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except IsADirectoryError:
            raise OSError(f"{path} is a directory, expected a config.json file") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
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
                hub repo id such as "facebook/hubert-base-ls960".
            **kwargs: `revision`, `cache_dir`, `local_files_only`, `token` for the hub; anything else
                overrides config fields.
        """
        from .hub import resolve_file

        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isfile(path):
            return cls.from_json_file(path, **kwargs)
        return cls.from_json_file(resolve_file(path, CONFIG_NAME, **hub_kwargs), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Writes `config.json` into `save_directory` (created if needed); returns the file path."""
        from .checkpoints.formats.atomic import atomic_write

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
