"""`from_pretrained`: find the checkpoint files, read them (any format), put the weights into a model."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

import numpy as np

from ..configuration import CONFIG_NAME, HubertConfig
from ..hub import resolve_file
from .names import candidate_keys, is_ignored, reference_entries

logger = logging.getLogger("hubert_tf")

# Weight files in order of preference: the first one found wins.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "tf_model.h5",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _reader(filename: str) -> Callable[[str], Mapping[str, np.ndarray]]:
    if filename.endswith(".safetensors"):
        from .formats.safetensors import read_safetensors

        return read_safetensors
    if filename.endswith(".bin"):
        from .formats.torch_pickle import read_torch_bin

        return read_torch_bin
    if filename.endswith(".h5"):
        from .legacy_tf import read_legacy_state_dict

        return read_legacy_state_dict
    raise ValueError(f"unsupported weight file {filename}")


def find_weights(name_or_path: str, **hub_kwargs) -> tuple[str, str]:
    """Returns (kind, local path) of the first weight file found, kind being its file name."""
    for filename in WEIGHT_FILES:
        path = resolve_file(name_or_path, filename, required=False, **hub_kwargs)
        if path is not None:
            return filename, path
    raise OSError(f"no weights found in {name_or_path}: looked for {', '.join(WEIGHT_FILES)}")


def read_state_dict(name_or_path: str, **hub_kwargs) -> tuple[dict[str, Any], str]:
    """Reads the checkpoint at `name_or_path` into {reference key: array}; returns it and the file read."""
    kind, path = find_weights(name_or_path, **hub_kwargs)
    if not kind.endswith(".index.json"):
        return dict(_reader(kind)(path)), path
    from .formats.sharding import read_index

    weight_map, _ = read_index(path, check_files=os.path.isdir(name_or_path))
    state: dict[str, Any] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = resolve_file(name_or_path, shard, **hub_kwargs)
        state.update(_reader(shard)(shard_path))
    missing = sorted(k for k in weight_map if k not in state)
    if missing:
        raise ValueError(f"{path}: keys listed in the index are missing from their shards: {missing[:5]}")
    return state, path


def load_state_dict_into(model, state: Mapping[str, Any], source: str = "checkpoint",
                         ignore_mismatched_sizes: bool = False) -> dict[str, list]:
    """Assigns the reference-named arrays of `state` to the model's variables.

    Returns {"missing": [...], "unexpected": [...], "mismatched": [(key, ckpt shape, model shape)]} and logs
    the warnings users know from transformers. Raises ValueError on a shape mismatch unless
    `ignore_mismatched_sizes`, in which case that weight keeps its fresh initialisation.
    """
    used: set[str] = set()
    missing, mismatched = [], []
    for entry in reference_entries(model):
        key = next((k for name in entry.keys for k in candidate_keys(name) if k in state), None)
        if key is None:
            missing.append(entry.keys[0])
            continue
        used.add(key)
        value = entry.from_reference(np.asarray(state[key]))
        expected = tuple(entry.variable.shape)
        if value.shape != expected:
            reference_shape = tuple(np.shape(state[key]))
            wanted = tuple(entry.to_reference(np.zeros(expected, np.float32)).shape)
            if not ignore_mismatched_sizes:
                raise ValueError(
                    f"{source}: weight {key} has shape {reference_shape} in the checkpoint but the model expects "
                    f"{wanted}; pass ignore_mismatched_sizes=True to re-initialise it"
                )
            mismatched.append((key, reference_shape, wanted))
            continue
        entry.variable.assign(value.astype(entry.variable.dtype))
    unexpected = sorted(k for k in state if k not in used and not is_ignored(k))
    name = type(model).__name__
    if missing:
        logger.warning("Some weights of %s were not in %s and are newly initialized: %s\n"
                       "You should probably train this model on a downstream task.", name, source, missing)
    if unexpected:
        logger.warning("Some weights of %s were not used when initializing %s: %s", source, name, unexpected)
    if mismatched:
        logger.warning("Some weights of %s were re-initialized because their shapes differ from %s: %s",
                       name, source, [f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched])
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def load_pretrained(cls, name_or_path, *, config=None, revision=None, cache_dir=None, local_files_only=False,
                    token=None, ignore_mismatched_sizes=False, dtype=None, **config_overrides):
    """The body of `TFHubertPreTrainedModel.from_pretrained` (see there)."""
    name_or_path = os.fspath(name_or_path)
    if os.path.isfile(name_or_path):
        raise OSError(f"{name_or_path} is a file; pass the directory that holds {CONFIG_NAME} and the weights")
    hub_kwargs = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    if config is None:
        config = HubertConfig.from_pretrained(name_or_path, **hub_kwargs, **config_overrides)
    elif config_overrides:
        config = config.copy(**config_overrides)
    state, path = read_state_dict(name_or_path, **hub_kwargs)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = cls(config, **kwargs)
    load_state_dict_into(model, state, source=path, ignore_mismatched_sizes=ignore_mismatched_sizes)
    model.name_or_path = name_or_path  # where processors and the CLI find the model's other files
    return model
