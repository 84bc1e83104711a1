"""The one weight-name table: our Keras variables <-> reference (PyTorch `transformers`) state-dict keys.

Our layers carry the reference's module names (`hubert/encoder/layers.0/attention/q_proj`), so a
variable's reference key is its path with "/" -> "." and the Keras leaf name mapped below. Every reader
(safetensors, bin, legacy h5) and the writer go through `reference_entries`.

Layouts: Keras kernels are the reference's weights with their axes reversed — Dense [in, out] vs
Linear [out, in]; Conv1D [k, in, out] vs Conv1d [out, in, k]; weight_g [k, 1, 1] vs [1, 1, k].
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

# Keras leaf name -> reference leaf names; the first is written, every one is read.
LEAF_NAMES: dict[str, tuple[str, ...]] = {
    "kernel": ("weight",),
    "bias": ("bias",),
    "gamma": ("weight",),
    "beta": ("bias",),
    "moving_mean": ("running_mean",),
    "moving_variance": ("running_var",),
    "weight_g": ("parametrizations.weight.original0", "weight_g"),
    "weight_v": ("parametrizations.weight.original1", "weight_v"),
    "masked_spec_embed": ("masked_spec_embed",),
    "layer_weights": ("layer_weights",),
    "label_embeddings": ("label_embeddings_concat",),
    "label_embs_concat": ("label_embs_concat",),  # TFHubertForPreTraining (fairseq name)
}

# Reference buffers that carry no information we use (read and ignored, written for completeness).
IGNORED_SUFFIXES = ("num_batches_tracked",)

BASE_PREFIX = "hubert."


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model variable and the reference keys it reads from (first = the one written)."""

    variable: object
    keys: tuple[str, ...]

    def to_reference(self, value: np.ndarray) -> np.ndarray:
        """Our layout -> the reference's (reverse the axes of kernels)."""
        return np.ascontiguousarray(np.transpose(value)) if value.ndim >= 2 else value

    def from_reference(self, value: np.ndarray) -> np.ndarray:
        return np.transpose(value) if value.ndim >= 2 else value


def variable_module_path(model, variable) -> list[str]:
    """Path of `variable` below `model`, e.g. ["hubert", "encoder", "layers.0", "attention", "q_proj", "kernel"]."""
    parts = variable.path.split("/")
    if model.name in parts:
        parts = parts[parts.index(model.name) + 1:]
    return parts


def reference_entries(model) -> Iterator[Entry]:
    """Yields an Entry for every weight of `model` (trainable or not), in the model's order."""
    strip_base = getattr(model, "base_model_prefix", "hubert") == ""
    for variable in model.weights:
        parts = variable_module_path(model, variable)
        leaf = parts[-1]
        if leaf not in LEAF_NAMES:
            raise KeyError(f"no reference name for variable {variable.path} (leaf {leaf!r}); extend LEAF_NAMES")
        module = ".".join(parts[:-1])
        if strip_base and (module == "hubert" or module.startswith(BASE_PREFIX)):
            module = module[len("hubert"):].lstrip(".")
        keys = tuple(f"{module}.{name}" if module else name for name in LEAF_NAMES[leaf])
        yield Entry(variable, keys)


def candidate_keys(key: str) -> tuple[str, ...]:
    """`key` and its spelling with / without the `hubert.` prefix (base checkpoints into heads and back)."""
    if key.startswith(BASE_PREFIX):
        return key, key[len(BASE_PREFIX):]
    return key, BASE_PREFIX + key


def is_ignored(key: str) -> bool:
    return key.endswith(IGNORED_SUFFIXES)
