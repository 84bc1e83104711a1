"""The one weight table: each model variable -> (reference key(s), layout op), for every reader and the writer.

Our layers carry the reference's (PyTorch `transformers`) module names, so a variable's reference key is
its module path with "/" -> "." plus the reference's leaf name. What is *not* implied by the name is the
layout, so every variable has an explicit row in `TABLE` naming two layout ops from `LAYOUTS`:

* `layout`: ours <-> the reference state dict (safetensors, pytorch_model.bin, and what we write);
* `legacy`: ours <-> the `tf_model.h5` of transformers' old TF classes, which stored Keras layouts
  except `weight_v`, kept in the PyTorch layout.

A variable without a row is an error (`KeyError` naming it): adding a layer means adding its rows here,
never a rule that guesses from the number of dimensions.

Example:

>>> [(row.module, row.leaf, row.layout) for row in TABLE if row.module.endswith("q_proj")]
[('encoder/layers.N/attention/q_proj', 'kernel', 'dense'), ('encoder/layers.N/attention/q_proj', 'bias', 'identity')]
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
    """A named, invertible layout transform: `to_reference(ours)`, `from_reference(theirs)`, and the same
    on shapes (so shapes are checked before any tensor is read)."""

    name: str
    axes: tuple | None  # permutation ours -> reference; None = identity

    def to_reference(self, value: np.ndarray) -> np.ndarray:
        if self.axes is None:
            return value
        self._check_rank(value.ndim)
        return np.ascontiguousarray(np.transpose(value, self.axes))

    def from_reference(self, value: np.ndarray) -> np.ndarray:
        if self.axes is None:
            return value
        self._check_rank(value.ndim)
        return np.transpose(value, np.argsort(self.axes))

    def reference_shape(self, shape: tuple) -> tuple:
        """Our shape -> the reference's."""
        shape = tuple(shape)
        if self.axes is None or len(shape) != len(self.axes):
            return shape  # a rank mismatch is reported by the caller's shape check
        return tuple(shape[a] for a in self.axes)

    def from_reference_shape(self, shape: tuple) -> tuple:
        """The reference's shape -> ours."""
        shape = tuple(shape)
        if self.axes is None or len(shape) != len(self.axes):
            return shape
        return tuple(shape[a] for a in np.argsort(self.axes))

    def _check_rank(self, ndim):
        if ndim != len(self.axes):
            raise ValueError(f"layout {self.name!r} needs a {len(self.axes)}-D tensor, got {ndim}-D")


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("identity", None),
    Layout("dense", (1, 0)),          # Keras Dense [in, out]        <-> torch Linear [out, in]
    Layout("conv1d", (2, 1, 0)),      # Keras Conv1D [k, in, out]    <-> torch Conv1d [out, in / groups, k]
    Layout("weight_g", (2, 1, 0)),    # our weight-norm gain [k, 1, 1] <-> torch's [1, 1, k] (dim=2 norm)
)}


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: variables at `module` (layer indices as `N`) with Keras leaf `leaf`.

    `reference` lists the reference leaf names: the first is written, every one is read (torch's
    weight-norm parametrisation renamed `weight_g` / `weight_v` in torch 2.1). `backbone` rows live
    under the body's prefix of the head models (`hubert.` or `wav2vec2.`, the body layer's name).
    """

    module: str
    leaf: str
    reference: tuple
    layout: str = "identity"
    legacy: str = "identity"
    backbone: bool = True


_D, _C, _G = "dense", "conv1d", "weight_g"
_BIAS, _WEIGHT = ("bias",), ("weight",)


def _dense(module, backbone=True):
    return [Row(module, "kernel", _WEIGHT, _D, backbone=backbone), Row(module, "bias", _BIAS, backbone=backbone)]


def _norm(module):
    return [Row(module, "gamma", _WEIGHT), Row(module, "beta", _BIAS)]


TABLE: tuple[Row, ...] = tuple([
    # --- backbone (TFHubertMainLayer), under `hubert.` / `wav2vec2.` in the head models ---------------
    Row("", "masked_spec_embed", ("masked_spec_embed",)),
    Row("feature_extractor/conv_layers.N/conv", "kernel", _WEIGHT, _C),
    Row("feature_extractor/conv_layers.N/conv", "bias", _BIAS),
    *_norm("feature_extractor/conv_layers.N/layer_norm"),  # group norm (layer 0) or layer norm (each)
    *_norm("feature_projection/layer_norm"),
    *_dense("feature_projection/projection"),
    Row("encoder/pos_conv_embed/conv", "kernel", _WEIGHT, _C),  # conv_pos_batch_norm: plain conv
    Row("encoder/pos_conv_embed/conv", "bias", _BIAS),
    Row("encoder/pos_conv_embed/conv", "weight_g", ("parametrizations.weight.original0", "weight_g"), _G),
    # The old TF code kept weight_v in the PyTorch layout [out, in / groups, k]: from h5 it is conv1d too.
    Row("encoder/pos_conv_embed/conv", "weight_v", ("parametrizations.weight.original1", "weight_v"), _C, _C),
    *_norm("encoder/pos_conv_embed/batch_norm"),
    Row("encoder/pos_conv_embed/batch_norm", "moving_mean", ("running_mean",)),
    Row("encoder/pos_conv_embed/batch_norm", "moving_variance", ("running_var",)),
    *_norm("encoder/layer_norm"),
    *[row for proj in ("q_proj", "k_proj", "v_proj", "out_proj") for row in _dense(f"encoder/layers.N/attention/{proj}")],
    *_norm("encoder/layers.N/layer_norm"),
    *_dense("encoder/layers.N/feed_forward/intermediate_dense"),
    *_dense("encoder/layers.N/feed_forward/output_dense"),
    *_norm("encoder/layers.N/final_layer_norm"),
    # MMS attention adapters (wav2vec2 with adapter_attn_dim), swapped per language by `load_adapter`.
    *_norm("encoder/layers.N/adapter_layer/norm"),
    *_dense("encoder/layers.N/adapter_layer/linear_1"),
    *_dense("encoder/layers.N/adapter_layer/linear_2"),
    # --- heads -------------------------------------------------------------------------------------
    *_dense("lm_head", backbone=False),                      # TFHubertForCTC
    *_dense("projector", backbone=False),                    # TFHubertForSequenceClassification
    *_dense("classifier", backbone=False),
    Row("", "layer_weights", ("layer_weights",), backbone=False),
    *_dense("final_proj", backbone=False),                   # TFHubertForPreTraining
    # [num_clusters, final_dim] in fairseq and here alike (the old ">= 2-D" rule transposed it).
    Row("", "label_embs_concat", ("label_embs_concat",), backbone=False),
])

_ROWS = {(row.module, row.leaf, row.backbone): row for row in TABLE}

# Reference buffers that carry no information we use (ignored when read, written for completeness).
IGNORED_SUFFIXES = ("num_batches_tracked",)

BASE_PREFIX = "hubert."
# Names of the body layer (and so prefixes of the body's weights in head checkpoints), one per family.
BODY_NAMES = ("hubert", "wav2vec2")


def find_row(module_parts: list, leaf: str, backbone: bool, what: str) -> Row:
    """The row of a variable at `module_parts` (below the backbone when `backbone`); KeyError names `what`."""
    pattern = "/".join(re.sub(r"\.\d+$", ".N", part) for part in module_parts)
    row = _ROWS.get((pattern, leaf, backbone))
    if row is None:
        raise KeyError(f"no row in the weight table (hubert_tf/checkpoints/names.py) for {what} "
                       f"(module {pattern!r}, leaf {leaf!r}); add one")
    return row


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model variable bound to its table row: reference keys (first = the one written) and layouts."""

    variable: object
    keys: tuple
    row: Row
    prefix: str = BASE_PREFIX  # the model's body prefix ("hubert." / "wav2vec2."), for `candidate_keys`

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.row.layout]

    def to_reference(self, value: np.ndarray) -> np.ndarray:
        """Our layout -> the reference's."""
        return self.layout.to_reference(value)

    def from_reference(self, value: np.ndarray) -> np.ndarray:
        """The reference layout -> ours."""
        return self.layout.from_reference(value)


def variable_module_path(model, variable) -> list[str]:
    """Path of `variable` below `model`, e.g. ["hubert", "encoder", "layers.0", "attention", "q_proj", "kernel"]."""
    parts = variable.path.split("/")
    if model.name in parts:
        parts = parts[parts.index(model.name) + 1:]
    return parts


def _split_backbone(parts: list, body: str | None = None) -> tuple[list, bool]:
    """(path below the body, whether it is in the body); `body` is the model's body name (any family's
    when None, for files that name their own)."""
    if parts and (parts[0] == body if body is not None else parts[0] in BODY_NAMES):
        return parts[1:], True
    return parts, False


def reference_entries(model) -> Iterator[Entry]:
    """Yields an Entry for every weight of `model` (trainable or not), in the model's order.

    Raises:
        KeyError: a variable has no row in `TABLE` (the message names it).
    """
    strip_base = getattr(model, "base_model_prefix", "hubert") == ""
    body = getattr(model, "body_name", "hubert")
    base_prefix = body + "."
    for variable in model.weights:
        parts = variable_module_path(model, variable)
        module, backbone = _split_backbone(parts[:-1], body)
        row = find_row(module, parts[-1], backbone, f"variable {variable.path}")
        prefix = base_prefix if backbone and not strip_base else ""
        dotted = ".".join(module)
        keys = tuple(prefix + (f"{dotted}.{name}" if dotted else name) for name in row.reference)
        yield Entry(variable, keys, row, base_prefix)


@dataclasses.dataclass(frozen=True)
class LegacyWeight:
    """How one `tf_model.h5` weight maps to the reference state dict: its key and the two layout ops
    (h5 -> ours by the row's `legacy` op, ours -> reference by its `layout` op)."""

    key: str
    legacy: Layout
    layout: Layout

    def reference_shape(self, shape: tuple) -> tuple:
        return self.layout.reference_shape(self.legacy.from_reference_shape(shape))

    def to_reference(self, value: np.ndarray) -> np.ndarray:
        return self.layout.to_reference(self.legacy.from_reference(value))


def legacy_weight(name: str) -> LegacyWeight:
    """The table row of a `tf_model.h5` weight name, e.g.
    "tf_hubert_for_ctc/hubert/encoder/layers.0/attention/q_proj/kernel:0" -> key
    "hubert.encoder.layers.0.attention.q_proj.weight" with layouts identity (h5 -> ours), dense (ours -> ref).

    Raises:
        KeyError: the name has no row in the table.
    """
    parts = name.split(":")[0].split("/")[1:]  # drop the model scope and ":0"
    module, backbone = _split_backbone(parts[:-1])
    row = find_row(module, parts[-1] if parts else "", backbone, f"legacy TF weight {name!r}")
    dotted = ".".join(parts[:-1])
    key = f"{dotted}.{row.reference[0]}" if dotted else row.reference[0]
    return LegacyWeight(key, LAYOUTS[row.legacy], LAYOUTS[row.layout])


def candidate_keys(key: str, prefix: str = BASE_PREFIX) -> tuple[str, ...]:
    """`key` and its spelling with / without the body `prefix` ("hubert." or "wav2vec2."; base
    checkpoints into heads and back)."""
    if key.startswith(prefix):
        return key, key[len(prefix):]
    return key, prefix + key


def is_ignored(key: str) -> bool:
    return key.endswith(IGNORED_SUFFIXES)
