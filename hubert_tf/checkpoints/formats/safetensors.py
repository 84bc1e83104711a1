"""Read and write ``.safetensors`` files with numpy only.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length
``N``, ``N`` bytes of UTF-8 JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {str: str}}``, then the tensor bytes, offsets relative to the end of the
header. Reading memory-maps the file copy-on-write, so loading costs no extra copy of the
weights (except bfloat16, converted to float32 by default) and the returned arrays are
writable without touching the file. The checks match the reference library: tensors must
tile the data section exactly (no gaps, no overlaps, nothing after the last tensor).
"""

import json
import math
import os
import struct
import types

import numpy as np

from hubert_tf.checkpoints.formats.atomic import atomic_write

__all__ = [
    "DEFAULT_METADATA",
    "read_safetensors",
    "read_safetensors_metadata",
    "write_safetensors",
]

# Same limit as the reference library: a larger header is treated as corrupt.
MAX_HEADER_SIZE = 100_000_000

# The metadata transformers writes for PyTorch checkpoints; read-only so it is a safe default.
DEFAULT_METADATA = types.MappingProxyType({"format": "pt"})

# safetensors dtype -> little-endian numpy dtype. BF16 has no numpy dtype: stored as '<u2'.
_NUMPY_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"),
    "C64": np.dtype("<c8"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
# The reference writer orders tensors by this rank, largest first (its dtype enum order, which
# is by alignment), then by name.
_WRITE_ORDER = {
    code: rank
    for rank, code in enumerate(
        ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
         "I32", "U32", "F32", "C64", "F64", "I64", "U64"]  # fmt: skip
    )
}


def _optional_ml_dtypes():
    try:
        import ml_dtypes
    except ImportError:  # ml_dtypes ships with TensorFlow and JAX; numpy alone lacks it
        return None
    return ml_dtypes


def _reader_dtypes():
    dtypes = dict(_NUMPY_DTYPES)
    ml_dtypes = _optional_ml_dtypes()
    if ml_dtypes is not None:
        dtypes["F8_E5M2"] = np.dtype(ml_dtypes.float8_e5m2)
        dtypes["F8_E4M3"] = np.dtype(ml_dtypes.float8_e4m3fn)
    return dtypes


def bfloat16_bits_to_float32(bits):
    """Widen bfloat16 values given as their uint16 bit patterns to float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _bfloat16_from_bits(bits, as_float32):
    if as_float32:
        return bfloat16_bits_to_float32(bits)
    ml_dtypes = _optional_ml_dtypes()
    if ml_dtypes is None:
        raise ImportError("bf16_as_float32=False needs the ml_dtypes package (installed with TensorFlow)")
    return bits.view(ml_dtypes.bfloat16)


def _check_shape(path, name, shape):
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    if len(shape) > 64:  # numpy's limit
        raise ValueError(f"{path}: tensor {name!r} has {len(shape)} dimensions (at most 64 supported)")


def _parse_header(path, f, file_size):
    """Return ``(data_start, metadata, entries)`` with entries sorted by offset and validated."""
    if file_size < 8:
        raise ValueError(f"{path}: file is {file_size} bytes, too small for a safetensors header")
    (header_size,) = struct.unpack("<Q", f.read(8))
    if header_size > MAX_HEADER_SIZE:
        raise ValueError(
            f"{path}: header length {header_size} exceeds the {MAX_HEADER_SIZE}-byte limit (corrupt file?)"
        )
    if 8 + header_size > file_size:
        raise ValueError(
            f"{path}: header length {header_size} runs past the end of the {file_size}-byte file (truncated?)"
        )
    raw = f.read(header_size)
    if len(raw) != header_size:
        raise ValueError(f"{path}: file shrank while reading the header")

    def unique_keys(pairs):
        out = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"{path}: header repeats the key {key!r}")
            out[key] = value
        return out

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: header is not valid UTF-8 ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: header JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is a JSON {type(header).__name__}, expected an object")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: '__metadata__' must map strings to strings")

    dtypes = _reader_dtypes()
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise ValueError(f"{path}: header entry {name!r} is not an object")
        for key in ("dtype", "shape", "data_offsets"):
            if key not in info:
                raise ValueError(f"{path}: tensor {name!r} has no {key!r}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _WRITE_ORDER:
            raise ValueError(f"{path}: tensor {name!r} has unknown dtype {code!r}")
        if code not in dtypes:
            raise ValueError(f"{path}: tensor {name!r} has dtype {code}, which needs the ml_dtypes package")
        _check_shape(path, name, shape)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            raise ValueError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
        entries.append((offsets[0], offsets[1], name, code, tuple(shape)))

    data_start = 8 + header_size
    data_size = file_size - data_start
    entries.sort(key=lambda e: (e[0], e[1]))
    position = 0
    for begin, end, name, code, shape in entries:
        if begin != position or end < begin:
            problem = "overlaps the previous tensor" if begin < position else "leaves a gap before it"
            if end < begin:
                problem = "ends before it begins"
            raise ValueError(f"{path}: data_offsets [{begin}, {end}] of tensor {name!r} {problem}")
        expected = math.prod(shape) * dtypes[code].itemsize
        if end - begin != expected:
            raise ValueError(
                f"{path}: tensor {name!r} ({code}, shape {list(shape)}) needs {expected} bytes "
                f"but data_offsets [{begin}, {end}] span {end - begin}"
            )
        position = end
    if position != data_size:
        if position > data_size:
            raise ValueError(
                f"{path}: tensors need {position} data bytes but the file holds {data_size} (truncated?)"
            )
        raise ValueError(f"{path}: {data_size - position} unexpected bytes after the last tensor")
    return data_start, metadata, entries


def read_safetensors_metadata(path):
    """Read the ``__metadata__`` of a safetensors file (without loading any tensor).

    Args:
        path: str or os.PathLike. The ``.safetensors`` file.

    Returns:
        dict[str, str]. The metadata; empty when the file has none.

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: the file is truncated or its header is corrupt (the message names the file).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        _, metadata, _ = _parse_header(path, f, os.fstat(f.fileno()).st_size)
    return metadata


def read_safetensors(path, *, mmap=True, bf16_as_float32=True):
    """Read every tensor of a safetensors file.

    Args:
        path: str or os.PathLike. The ``.safetensors`` file.
        mmap: bool. Memory-map the file (copy-on-write): nothing is read until used and the
            arrays cost no extra memory. With ``False`` the data is read into memory.
            Defaults to ``True``.
        bf16_as_float32: bool. Return BF16 tensors as exact float32 copies; with ``False``
            they are ``ml_dtypes.bfloat16`` arrays. Defaults to ``True``.

    Returns:
        dict[str, np.ndarray]. Tensors in file order (by offset), native byte order, shapes as
        stored. F8_E4M3/F8_E5M2 tensors come as ``ml_dtypes`` float8 arrays when ml_dtypes is
        installed.

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: the file is truncated or corrupt (the message names the file and the problem).

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> write_safetensors(path, {"w": np.eye(2, dtype=np.float32)})
    >>> read_safetensors(path)["w"].tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        data_start, _, entries = _parse_header(path, f, file_size)
        data_size = file_size - data_start
        if data_size == 0:
            data = np.zeros(0, dtype=np.uint8)
        elif mmap:
            data = np.memmap(f, dtype=np.uint8, mode="c", offset=data_start, shape=(data_size,))
        else:
            data = np.empty(data_size, dtype=np.uint8)
            f.seek(data_start)
            if f.readinto(memoryview(data)) != data_size:
                raise ValueError(f"{path}: file shrank while reading the tensor data")

    dtypes = _reader_dtypes()
    tensors = {}
    for begin, end, name, code, shape in entries:
        array = data[begin:end].view(dtypes[code]).reshape(shape)
        if code == "BF16":
            array = _bfloat16_from_bits(array, bf16_as_float32)
        # Plain ndarray views of the memmap: np.memmap subclasses behave oddly in arithmetic.
        tensors[name] = array.view(np.ndarray) if isinstance(array, np.memmap) else array
    return tensors


def _dtype_code(name, array):
    dtype = array.dtype
    if dtype.name == "bfloat16":
        return "BF16"
    if dtype.name == "float8_e5m2":
        return "F8_E5M2"
    if dtype.name == "float8_e4m3fn":
        return "F8_E4M3"
    if dtype.kind == "b":
        return "BOOL"
    codes = {("u", 1): "U8", ("i", 1): "I8", ("i", 2): "I16", ("u", 2): "U16", ("f", 2): "F16",
             ("i", 4): "I32", ("u", 4): "U32", ("f", 4): "F32", ("c", 8): "C64", ("f", 8): "F64",
             ("i", 8): "I64", ("u", 8): "U64"}  # fmt: skip
    code = codes.get((dtype.kind, dtype.itemsize))
    if code is None:
        raise ValueError(f"tensor {name!r} has dtype {dtype}, which safetensors cannot store")
    return code


def _little_endian_bytes(array):
    """A C-contiguous little-endian uint8 view of ``array`` (copies only when needed)."""
    little = array.dtype.newbyteorder("<")
    array = np.ascontiguousarray(array, dtype=little)
    return array.reshape(-1).view(np.uint8)


def write_safetensors(path, tensors, metadata=DEFAULT_METADATA):
    """Write tensors to a safetensors file, byte-identical to the reference library's output.

    The write is atomic: the file appears under ``path`` only once complete (see
    :func:`hubert_tf.checkpoints.formats.atomic.atomic_write`).

    Args:
        path: str or os.PathLike. Destination ``.safetensors`` file.
        tensors: Mapping[str, array-like]. Name -> tensor. bfloat16/float8 need ``ml_dtypes``
            arrays; every other numpy numeric or bool dtype is stored as is.
        metadata: Mapping[str, str] or None. Written as ``__metadata__``; ``None`` writes none.
            Defaults to ``{"format": "pt"}``, which transformers expects in PyTorch checkpoints.

    Raises:
        ValueError: a name is not a string or is ``"__metadata__"``, a dtype cannot be stored,
            or metadata is not a mapping of strings to strings.
        OSError: the file cannot be written (any previous file at ``path`` is kept).

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> write_safetensors(path, {"bias": np.zeros(3, np.float32)}, metadata=None)
    >>> read_safetensors_metadata(path)
    {}
    """
    if metadata is not None:
        if not hasattr(metadata, "items") or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise ValueError(f"metadata must map strings to strings, got {metadata!r}")
        metadata = dict(metadata)

    prepared = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise ValueError(f"tensor names must be strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        array = np.asarray(value)
        prepared.append((name, _dtype_code(name, array), array))
    # Largest alignment first, then by name: keeps every tensor aligned in the file.
    prepared.sort(key=lambda item: (-_WRITE_ORDER[item[1]], item[0]))

    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, code, array in prepared:
        nbytes = array.size * array.dtype.itemsize
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    # Compact JSON with raw UTF-8, as serde_json writes it; padded with spaces to 8 bytes.
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)

    with atomic_write(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for _, _, array in prepared:
            if array.size:
                f.write(memoryview(_little_endian_bytes(array)))
