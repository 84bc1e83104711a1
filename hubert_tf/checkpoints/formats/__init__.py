"""Checkpoint file formats as ``name -> numpy array`` mappings, or planned first as ``name -> TensorRecord``
(numpy, h5py, the ``safetensors`` library and huggingface_hub's shard splitting).

No torch, TensorFlow or transformers needed, and no code from a checkpoint is ever executed.

* :mod:`.safetensors`: ``plan_safetensors``, ``read_safetensors``, ``read_safetensors_metadata``, ``write_safetensors``
* :mod:`.torch_pickle`: ``plan_torch_bin``, ``read_torch_bin`` (``pytorch_model.bin``, zip and legacy formats)
* :mod:`.legacy_h5`: ``plan_legacy_tf_h5``, ``read_legacy_tf_h5`` (``tf_model.h5`` of transformers' old TF classes)
* :mod:`.sharding`: ``read_index``, ``split_state_dict``, ``split_into_shards``, ``index_to_json``, ``write_index``

Every reader raises ``OSError`` when the file cannot be read and ``ValueError`` (message
starting with the file name) when it is truncated, corrupt or unsafe.
"""

from hubert_tf.checkpoints.formats.legacy_h5 import plan_legacy_tf_h5, read_legacy_tf_h5
from hubert_tf.checkpoints.formats.safetensors import (
    DEFAULT_METADATA,
    plan_safetensors,
    read_safetensors,
    read_safetensors_metadata,
    write_safetensors,
)
from hubert_tf.checkpoints.formats.sharding import (
    index_to_json,
    parse_size,
    read_index,
    require_inside,
    split_into_shards,
    split_state_dict,
    write_index,
)
from hubert_tf.checkpoints.formats.torch_pickle import UnsafeCheckpointError, load_torch_pickle, plan_torch_bin, read_torch_bin

__all__ = [
    "DEFAULT_METADATA",
    "UnsafeCheckpointError",
    "index_to_json",
    "load_torch_pickle",
    "parse_size",
    "plan_legacy_tf_h5",
    "plan_safetensors",
    "plan_torch_bin",
    "read_index",
    "read_legacy_tf_h5",
    "read_safetensors",
    "read_safetensors_metadata",
    "read_torch_bin",
    "require_inside",
    "split_into_shards",
    "split_state_dict",
    "write_index",
    "write_safetensors",
]
