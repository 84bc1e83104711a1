"""`save_pretrained`: config.json + model.safetensors (sharded above max_shard_size) in the reference
PyTorch naming and layout, written atomically, so `transformers.HubertForCTC.from_pretrained(dir)` loads it."""

from __future__ import annotations

import os
import re

import numpy as np

from ..configuration import CONFIG_NAME
from .formats.atomic import atomic_files
from .formats.safetensors import write_safetensors
from .formats.sharding import build_index, index_to_json, shard_filenames, split_into_shards
from .names import reference_entries

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


def model_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights as the reference's state dict: {torch key: float32 array in torch layout}."""
    state = {}
    for entry in reference_entries(model):
        value = np.asarray(entry.variable.numpy())
        if value.dtype != np.float32:
            value = value.astype(np.float32)
        state[entry.keys[0]] = entry.to_reference(value)
    for key in [k for k in state if k.endswith(".running_mean")]:
        # torch's BatchNorm buffer; it only counts updates, so 0 is as good as any.
        state[key[: -len("running_mean")] + "num_batches_tracked"] = np.array(0, np.int64)
    return state


def reference_class_name(model) -> str:
    """The transformers class that loads what `model` saves ("TFHubertForCTC" -> "HubertForCTC")."""
    name = type(model).__name__
    return name[2:] if name.startswith("TF") else name


def save_pretrained(model, save_directory, max_shard_size="5GB", safe_serialization=True) -> None:
    """See `TFHubertPreTrainedModel.save_pretrained`."""
    if not safe_serialization:
        raise ValueError("only safetensors is written (safe_serialization=False is not supported)")
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise OSError(f"{save_directory} is a file, expected a directory")
    os.makedirs(save_directory, exist_ok=True)
    config = model.config.copy(architectures=[reference_class_name(model)])
    state = model_state_dict(model)
    shards = split_into_shards(state, max_shard_size)
    names = shard_filenames(len(shards))
    stale = [f for f in os.listdir(save_directory) if f == SAFE_WEIGHTS_NAME or f == SAFE_INDEX_NAME or _SHARD.match(f)]
    with atomic_files(save_directory) as files:
        with files.open(CONFIG_NAME, "w") as f:
            f.write(config.to_json_string())
        for shard, name in zip(shards, names):
            write_safetensors(files.path(name), shard, metadata={"format": "pt"})
        if len(shards) > 1:
            with files.open(SAFE_INDEX_NAME, "w") as f:
                f.write(index_to_json(build_index(shards, names)))
        for name in stale:
            if name not in names and not (len(shards) > 1 and name == SAFE_INDEX_NAME):
                files.remove_on_commit(name)
