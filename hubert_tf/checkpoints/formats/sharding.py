"""Sharded checkpoints: the ``*.index.json`` file and splitting tensors into shards.

An index (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``) is::

    {"metadata": {"total_size": 123456}, "weight_map": {"lm_head.bias": "model-00002-of-00002.safetensors", ...}}

Shards are named ``model-00001-of-00003.safetensors`` and filled in the tensors' order, a new
shard starting whenever the next tensor would push the current one past ``max_shard_size``
(a single tensor larger than that gets a shard of its own), exactly like
``huggingface_hub.split_state_dict_into_shards_factory`` that transformers uses.
"""

import json
import ntpath
import os
import posixpath
import re

from hubert_tf.checkpoints.formats.atomic import atomic_write

__all__ = [
    "build_index",
    "index_to_json",
    "parse_size",
    "read_index",
    "shard_filenames",
    "split_into_shards",
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


def split_into_shards(tensors, max_shard_size="5GB"):
    """Group tensors into shards of at most ``max_shard_size`` bytes, keeping their order.

    Args:
        tensors: Mapping[str, np.ndarray]. Name -> tensor (anything with ``nbytes``).
        max_shard_size: int or str. See :func:`parse_size`. Defaults to ``"5GB"``.

    Returns:
        list[dict[str, np.ndarray]]. The shards in order; at least one (empty input gives one
        empty shard). A tensor larger than ``max_shard_size`` is alone in its shard.

    Example:

    >>> import numpy as np
    >>> shards = split_into_shards({"a": np.zeros(300, np.uint8), "b": np.zeros(800, np.uint8),
    ...                             "c": np.zeros(100, np.uint8)}, "1KB")
    >>> [list(s) for s in shards]
    [['a'], ['b', 'c']]
    """
    limit = parse_size(max_shard_size)
    shards, current, current_size = [], {}, 0
    for name, tensor in tensors.items():
        size = int(tensor.nbytes)
        if size > limit:
            shards.append({name: tensor})
            continue
        if current and current_size + size > limit:
            shards.append(current)
            current, current_size = {}, 0
        current[name] = tensor
        current_size += size
    if current or not shards:
        shards.append(current)
    return shards


def shard_filenames(count, pattern=DEFAULT_PATTERN):
    """Names for ``count`` shards: ``model.safetensors`` alone, else ``model-00001-of-00003.safetensors``...

    Args:
        count: int. Number of shards (>= 1).
        pattern: str. A name with a ``{suffix}`` field, e.g. ``"pytorch_model{suffix}.bin"``.
            Defaults to ``"model{suffix}.safetensors"``.

    Returns:
        list[str].

    Example:

    >>> shard_filenames(2)
    ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
    """
    if count < 1:
        raise ValueError(f"need at least one shard, got {count}")
    if count == 1:
        return [pattern.format(suffix="")]
    return [pattern.format(suffix=f"-{i + 1:05d}-of-{count:05d}") for i in range(count)]


def build_index(shards, filenames=None, metadata=None):
    """Build the index dict transformers writes beside sharded weights.

    Args:
        shards: list[Mapping[str, np.ndarray]]. As returned by :func:`split_into_shards`.
        filenames: list[str] or None. One per shard; defaults to :func:`shard_filenames`.
        metadata: Mapping or None. Extra metadata entries (transformers 5 adds
            ``"total_parameters"``). Defaults to none.

    Returns:
        dict. ``{"metadata": {"total_size": <bytes of all tensors>, ...}, "weight_map":
        {name: filename}}``.
    """
    if filenames is None:
        filenames = shard_filenames(len(shards))
    if len(filenames) != len(shards):
        raise ValueError(f"{len(shards)} shards but {len(filenames)} file names")
    weight_map, total_size = {}, 0
    for shard, filename in zip(shards, filenames):
        for name, tensor in shard.items():
            if name in weight_map:
                raise ValueError(f"tensor {name!r} is in two shards")
            weight_map[name] = filename
            total_size += int(tensor.nbytes)
    return {"metadata": {**(metadata or {}), "total_size": total_size}, "weight_map": weight_map}


def index_to_json(index):
    """Serialize an index exactly as transformers does (sorted keys, 2-space indent, final newline)."""
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def write_index(path, index):
    """Write an index file atomically (see :func:`index_to_json`)."""
    with atomic_write(path, "w", newline="\n") as f:
        f.write(index_to_json(index))


def _unsafe_shard_name(name, directory):
    """Return why ``name`` must not be opened as a shard next to the index, or None."""
    if not name or "\x00" in name:
        return "is empty or contains NUL"
    if posixpath.isabs(name) or ntpath.isabs(name) or ntpath.splitdrive(name)[0]:
        return "is an absolute path"
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        return "contains '..'"
    # Lexical check (no symlink resolution): hub cache snapshots are symlinks into blobs/.
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
            absolute, contains ``..`` or otherwise resolves outside the index's directory
            (symlinks are not followed for this check, so hub-cache symlinks are fine).
        FileNotFoundError: with ``check_files``, shards are missing (all of them are listed).
    """
    index_path = os.fspath(index_path)
    with open(index_path, "rb") as f:
        raw = f.read()
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
    return weight_map, metadata
