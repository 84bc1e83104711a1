"""Checkpoint file formats as plain ``name -> numpy array`` mappings (numpy, h5py and stdlib only).

No torch, TensorFlow or transformers needed, and no code from a checkpoint is ever executed.

* :mod:`.safetensors`: ``read_safetensors``, ``read_safetensors_metadata``, ``write_safetensors``
* :mod:`.torch_pickle`: ``read_torch_bin`` (``pytorch_model.bin``, zip and legacy formats)
* :mod:`.legacy_h5`: ``read_legacy_tf_h5`` (``tf_model.h5`` of transformers' old TF classes)
* :mod:`.sharding`: ``read_index``, ``split_into_shards``, ``shard_filenames``, ``build_index``
* :mod:`.atomic`: ``atomic_write``, ``atomic_files`` (crash-safe saving)

Every reader raises ``OSError`` when the file cannot be read and ``ValueError`` (message
starting with the file name) when it is truncated, corrupt or unsafe.
"""

from hubert_tf.checkpoints.formats.atomic import AtomicFileSet, atomic_files, atomic_write
from hubert_tf.checkpoints.formats.legacy_h5 import read_legacy_tf_h5
from hubert_tf.checkpoints.formats.safetensors import (
    DEFAULT_METADATA,
    read_safetensors,
    read_safetensors_metadata,
    write_safetensors,
)
from hubert_tf.checkpoints.formats.sharding import (
    build_index,
    index_to_json,
    parse_size,
    read_index,
    shard_filenames,
    split_into_shards,
    write_index,
)
from hubert_tf.checkpoints.formats.torch_pickle import UnsafeCheckpointError, load_torch_pickle, read_torch_bin

__all__ = [
    "AtomicFileSet",
    "DEFAULT_METADATA",
    "UnsafeCheckpointError",
    "atomic_files",
    "atomic_write",
    "build_index",
    "index_to_json",
    "load_torch_pickle",
    "parse_size",
    "read_index",
    "read_legacy_tf_h5",
    "read_safetensors",
    "read_safetensors_metadata",
    "read_torch_bin",
    "shard_filenames",
    "split_into_shards",
    "write_index",
    "write_safetensors",
]
