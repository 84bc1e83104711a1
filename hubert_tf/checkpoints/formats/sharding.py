"""Sharded checkpoints: the ``*.index.json`` file and splitting tensors into shards.

An index (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``) is::

    {"metadata": {"total_size": 123456}, "weight_map": {"lm_head.bias": "model-00002-of-00002.safetensors", ...}}

Shards are named ``model-00001-of-00003.safetensors`` and filled in the tensors' order, a new
shard starting whenever the next tensor would push the current one past ``max_shard_size``
(a single tensor larger than that gets a shard of its own): the split is
``huggingface_hub.split_state_dict_into_shards_factory``, the one transformers uses.

Shard names are checked twice: lexically (no absolute paths, no ``..``) and, once the files
exist, by their real paths (symlinks resolved), which must stay inside the checkpoint directory.
"""

import json
import ntpath
import os
import posixpath
import re

from hubert_tf.files import atomic_write, read_json

__all__ = [
    "index_to_json",
    "parse_size",
    "read_index",
    "checkpoint_root",
    "require_inside",
    "split_into_shards",
    "split_state_dict",
    "write_index",
]

DEFAULT_PATTERN = "model{suffix}.safetensors"
_SIZE_UNITS = {
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]I?[B])\s*$", re.IGNORECASE)


def parse_size(size):
    """Convert a shard size such as ``"5GB"`` to bytes, as transformers does.

    Args:
        size: int or str. Bytes, or a number with a unit: ``KB``/``MB``/``GB``/``TB`` are powers
            of 1000, ``KiB``/``MiB``/``GiB``/``TiB`` powers of 1024 (case-insensitive), and as in
            transformers a lowercase ``b`` in the decimal units means *bits* (``"8Mb"`` is 10**6).

    Returns:
        int. The size in bytes (positive).

    Raises:
        ValueError: the string cannot be parsed or the size is not positive.

    Example:

    >>> parse_size("5GB"), parse_size("5GiB"), parse_size("10KB")
    (5000000000, 5368709120, 10000)
    """
    if isinstance(size, bool):
        raise ValueError(f"invalid size {size!r}")
    if isinstance(size, int):
        value = size
    elif isinstance(size, str):
        match = _SIZE.match(size)
        if match is None:
            raise ValueError(f"invalid size {size!r}: use an integer followed by a unit, e.g. '5GB' or '500MiB'")
        number, unit = match.groups()
        value = int(float(number) * _SIZE_UNITS[unit.upper()])
        if unit.endswith("b") and not unit.upper().endswith("IB"):
            value //= 8  # bits
    else:
        raise ValueError(f"invalid size {size!r}: expected an int or a string like '5GB'")
    if value <= 0:
        raise ValueError(f"shard size must be positive, got {size!r}")
    return value


def split_state_dict(tensors, max_shard_size="5GB", pattern=DEFAULT_PATTERN):
    """Split tensors into named shards with ``huggingface_hub.split_state_dict_into_shards_factory``.

    Args:
        tensors: Mapping[str, np.ndarray]. Name -> tensor (anything with ``nbytes``), in saving order.
        max_shard_size: int or str. See :func:`parse_size`. Defaults to ``"5GB"``.
        pattern: str. File name pattern with ``{suffix}``. Defaults to ``"model{suffix}.safetensors"``.

    Returns:
        tuple ``(shards, index)``: ``shards`` is a list of ``(file name, {name: tensor})``, at least
        one; ``index`` is the dict transformers writes beside several shards (``{"metadata":
        {"total_size": ...}, "weight_map": {...}}``), or None for a single file.

    Example:

    >>> import numpy as np
    >>> shards, index = split_state_dict({"a": np.zeros(600, np.uint8), "b": np.zeros(600, np.uint8)}, "1KB")
    >>> [name for name, _ in shards], index["metadata"]
    (['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'], {'total_size': 1200})
    """
    from huggingface_hub import split_state_dict_into_shards_factory

    split = split_state_dict_into_shards_factory(
        dict(tensors), get_storage_size=lambda tensor: int(tensor.nbytes),
        filename_pattern=pattern, max_shard_size=parse_size(max_shard_size),
    )
    shards = [(name, {key: tensors[key] for key in keys}) for name, keys in split.filename_to_tensors.items()]
    if not shards:  # no tensors at all: one empty file, as transformers writes
        return [(pattern.format(suffix=""), {})], None
    if not split.is_sharded:
        return shards, None
    return shards, {"metadata": dict(split.metadata), "weight_map": dict(split.tensor_to_filename)}


def split_into_shards(tensors, max_shard_size="5GB"):
    """Group tensors into shards of at most ``max_shard_size`` bytes, keeping their order.

    Args:
        tensors: Mapping[str, np.ndarray]. Name -> tensor (anything with ``nbytes``).
        max_shard_size: int or str. See :func:`parse_size`. Defaults to ``"5GB"``.

    Returns:
        list[dict[str, np.ndarray]]. The shards in order (see :func:`split_state_dict`); at least one
        (empty input gives one empty shard). A tensor larger than ``max_shard_size`` is alone in its shard.

    Example:

    >>> import numpy as np
    >>> shards = split_into_shards({"a": np.zeros(300, np.uint8), "b": np.zeros(800, np.uint8),
    ...                             "c": np.zeros(100, np.uint8)}, "1KB")
    >>> [list(s) for s in shards]
    [['a'], ['b', 'c']]
    """
    return [shard for _, shard in split_state_dict(tensors, max_shard_size)[0]]


def index_to_json(index):
    """Serialize an index exactly as transformers does (sorted keys, 2-space indent, final newline)."""
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def write_index(path, index):
    """Write an index file atomically (see :func:`index_to_json`)."""
    with atomic_write(path, "w", newline="\n") as f:
        f.write(index_to_json(index))


def checkpoint_root(directory):
    """The directory a checkpoint's files must really live in: ``directory`` itself, or for a hub cache
    snapshot (``<repo>/snapshots/<revision>``, whose files are symlinks into ``<repo>/blobs``) the repo folder.

    Example:

    >>> checkpoint_root("/cache/models--facebook--hubert-base-ls960/snapshots/abc123")
    '/cache/models--facebook--hubert-base-ls960'
    """
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    if os.path.basename(parent) == "snapshots":
        return os.path.dirname(parent)
    return directory


def require_inside(path, root, what):
    """Raise ValueError unless the real path of ``path`` (symlinks resolved) is inside ``root``'s real path.

    Args:
        path: str. A file of the checkpoint.
        root: str. Its checkpoint directory (see :func:`checkpoint_root`).
        what: str. Named first in the error (e.g. the index file).

    Example:

    >>> require_inside("/etc/passwd", "/tmp", "model.safetensors.index.json")
    Traceback (most recent call last):
    ValueError: model.safetensors.index.json: refusing /etc/passwd: it resolves to /etc/passwd, outside the checkpoint directory /tmp
    """
    real, base = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([base, real]) != base or real == base:
        raise ValueError(f"{what}: refusing {path}: it resolves to {real}, outside the checkpoint directory {base}")


def _unsafe_shard_name(name, directory):
    """Return why ``name`` must not be opened as a shard next to the index, or None."""
    if not name or "\x00" in name:
        return "is empty or contains NUL"
    if posixpath.isabs(name) or ntpath.isabs(name) or ntpath.splitdrive(name)[0]:
        return "is an absolute path"
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        return "contains '..'"
    # Lexical check first; real paths are checked by require_inside once the files exist.
    base = os.path.normpath(os.path.abspath(directory))
    target = os.path.normpath(os.path.join(base, name))
    if os.path.commonpath([base, target]) != base or target == base:
        return "resolves outside the index's directory"
    return None


def read_index(index_path, check_files=True):
    """Read a sharded-checkpoint index and validate its shard names.

    Args:
        index_path: str or os.PathLike. ``model.safetensors.index.json`` or
            ``pytorch_model.bin.index.json``.
        check_files: bool. Also require every shard to exist next to the index (set ``False``
            when the shards are still to be downloaded). Defaults to ``True``.

    Returns:
        tuple ``(weight_map, metadata)``: ``weight_map`` is ``dict[str, str]`` tensor name ->
        shard file name exactly as written in the index (relative to the index's directory);
        ``metadata`` is the index's ``"metadata"`` dict (empty if absent).

    Raises:
        OSError: the index cannot be read.
        ValueError: the index is not valid JSON or lacks a ``weight_map``; a shard name is
            absolute, contains ``..`` or otherwise resolves outside the index's directory.
            With ``check_files``, a shard whose real path (symlinks resolved) is outside the
            checkpoint directory (a hub cache snapshot's repo folder counts as inside).
        FileNotFoundError: with ``check_files``, shards are missing (all of them are listed).
    """
    index_path = os.fspath(index_path)
    try:
        index = read_json(index_path)
    except ValueError as exc:
        raise ValueError(f"{index_path}: not a valid JSON index ({exc})") from None
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise ValueError(f"{index_path}: index has no 'weight_map' object")
    metadata = index.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{index_path}: index 'metadata' is not an object")

    directory = os.path.dirname(os.path.abspath(index_path))
    weight_map = {}
    for name, shard in index["weight_map"].items():
        if not isinstance(shard, str):
            raise ValueError(f"{index_path}: weight_map entry {name!r} -> {shard!r} is not a file name")
        problem = _unsafe_shard_name(shard, directory)
        if problem:
            raise ValueError(f"{index_path}: refusing weight_map entry {name!r} -> {shard!r}: shard name {problem}")
        weight_map[name] = shard

    if check_files:
        missing = sorted({s for s in weight_map.values() if not os.path.isfile(os.path.join(directory, s))})
        if missing:
            raise FileNotFoundError(f"{index_path}: {len(missing)} shard file(s) missing: {', '.join(missing)}")
        root = checkpoint_root(directory)
        for shard in sorted(set(weight_map.values())):
            require_inside(os.path.join(directory, shard), root, index_path)
    return weight_map, metadata
