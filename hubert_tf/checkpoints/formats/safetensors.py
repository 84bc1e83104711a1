"""Read and write ``.safetensors`` files: the ``safetensors`` library's numpy API, with our checks around it.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length
``N``, ``N`` bytes of UTF-8 JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {str: str}}``, then the tensor bytes, offsets relative to the end of the header.

Reading is planned: :func:`plan_safetensors` parses and validates the header (the same rules as the
library -- tensors tile the data section exactly -- but every problem is a ``ValueError`` naming the
file and the tensor), and returns one :class:`TensorRecord` per tensor without reading tensor bytes.
A record's ``read()`` then takes that one tensor through ``safetensors.safe_open(framework="np")``,
which returns a private copy (so loading holds about one copy of the weights, tensor by tensor).
Writing is ``safetensors.numpy.save_file`` into an atomic temporary sibling.
"""

import json
import math
import os
import struct
import types

import numpy as np

from hubert_tf.checkpoints.formats.records import TensorRecord
from hubert_tf.files import atomic_files

__all__ = [
    "DEFAULT_METADATA",
    "read_safetensors",
    "plan_safetensors",
    "read_safetensors_metadata",
    "write_safetensors",
]

# Same limit as the reference library: a larger header is treated as corrupt.
MAX_HEADER_SIZE = 100_000_000
# No tensor of any model has 2**48 (~2.8e14) elements; numpy's own limit is 2**63 bytes.
MAX_ELEMENTS = 2**48

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
# Every dtype code of the format (F8 ones read only with ml_dtypes installed).
_KNOWN_CODES = frozenset(
    ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
     "I32", "U32", "F32", "C64", "F64", "I64", "U64"]  # fmt: skip
)


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
    # Zero-size tensors tile the data section with 0 bytes whatever their other dimensions, so a
    # header could declare [0, 2**62, 2**62]: numpy cannot even describe that (and other readers
    # overflow). Bound the product of the non-zero dimensions by what an ndarray can address.
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise ValueError(f"{path}: tensor {name!r} declares an absurd shape {shape!r} (more than 2**48 elements)")


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
        if not isinstance(code, str) or code not in _KNOWN_CODES:
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
    return plan_safetensors(path)[0]


# Dtypes the library's numpy API returns as numpy arrays. BF16 and F8 need ml_dtypes there (0.8 returns
# ml_dtypes arrays when it is importable, older versions raise), so those are read by us from the byte
# range the validated header gives (see _read_raw), and BF16 is widened to float32 with numpy alone.
_LIBRARY_DTYPES = frozenset(_NUMPY_DTYPES) - {"BF16"}


class _LibraryFile:
    """One ``safe_open`` handle shared by the records of a file, opened on the first read."""

    def __init__(self, path, backend):
        self.path, self.backend, self.handle = path, backend, None

    def get(self, name):
        import safetensors

        try:
            if self.handle is None:
                self.handle = safetensors.safe_open(self.path, framework="np", backend=self.backend)
            return self.handle.get_tensor(name)
        except safetensors.SafetensorError as exc:
            raise ValueError(f"{self.path}: safetensors could not read tensor {name!r} ({exc})") from None


def _read_raw(path, data_start, begin, end, dtype):
    """Tensor bytes [begin, end) of the data section as a flat array of `dtype` (a private copy)."""
    out = np.empty((end - begin) // dtype.itemsize, dtype=dtype)
    with open(path, "rb") as f:
        f.seek(data_start + begin)
        if f.readinto(memoryview(out).cast("B")) != end - begin:
            raise ValueError(f"{path}: file shrank while reading the tensor data")
    return out


def _reader(path, library, data_start, begin, end, name, code, shape, bf16_as_float32):
    dtypes = _reader_dtypes()

    def read():
        if code in _LIBRARY_DTYPES:
            array = library.get(name)
            if array.shape != shape or array.dtype != dtypes[code].newbyteorder("="):
                raise ValueError(f"{path}: tensor {name!r} changed while reading (file replaced?)")
            return array
        array = _read_raw(path, data_start, begin, end, dtypes[code]).reshape(shape)
        if code == "BF16":
            return _bfloat16_from_bits(array, bf16_as_float32)
        return array

    return read


def plan_safetensors(path, *, mmap=True, bf16_as_float32=True):
    """Plan a safetensors file: validate its header and describe every tensor, reading no tensor bytes.

    Args:
        path: str or os.PathLike. The ``.safetensors`` file.
        mmap: bool. The library's I/O backend for reads: ``True`` memory-maps the file, ``False``
            reads with ``pread``. Either way each ``read()`` returns a private, writable copy.
            Defaults to ``True``.
        bf16_as_float32: bool. ``read()`` of a BF16 tensor returns exact float32 (else an
            ``ml_dtypes.bfloat16`` array). Defaults to ``True``.

    Returns:
        tuple ``(metadata, records)``: the ``__metadata__`` dict and ``{name: TensorRecord}`` in file
        order; a record's ``dtype`` is the numpy dtype (``"bfloat16"`` for BF16), ``nbytes`` the bytes
        its ``read()`` takes from the file.

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: the header is truncated, corrupt or declares impossible tensors (naming the file).

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> write_safetensors(path, {"w": np.ones((2, 3), np.float32)})
    >>> metadata, records = plan_safetensors(path)
    >>> records["w"].shape, records["w"].nbytes, records["w"].read().sum()
    ((2, 3), 24, np.float32(6.0))
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data_start, metadata, entries = _parse_header(path, f, os.fstat(f.fileno()).st_size)
    library = _LibraryFile(path, "mmap" if mmap else "pread")
    dtypes = _reader_dtypes()
    records = {}
    for begin, end, name, code, shape in entries:
        records[name] = TensorRecord(
            name=name, dtype="bfloat16" if code == "BF16" else dtypes[code].newbyteorder("="),
            shape=shape, nbytes=end - begin, source=path,
            read=_reader(path, library, data_start, begin, end, name, code, shape, bf16_as_float32),
        )
    return metadata, records


def read_safetensors(path, *, mmap=True, bf16_as_float32=True):
    """Read every tensor of a safetensors file.

    Args:
        path: str or os.PathLike. The ``.safetensors`` file.
        mmap: bool. I/O backend of the library: memory map (``True``) or ``pread``. The arrays are
            private copies either way (writable, never touching the file). Defaults to ``True``.
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
    _, records = plan_safetensors(path, mmap=mmap, bf16_as_float32=bf16_as_float32)
    return {name: record.read() for name, record in records.items()}


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


def _contiguous_little_endian(array):
    """``array`` C-contiguous in little-endian order (copies only when needed): the library's numpy
    writer takes each array's data pointer as is, so strided views must be made dense first."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and np.little_endian is False):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array if array.flags.c_contiguous else array.copy(order="C")  # (ascontiguousarray makes 0-D 1-D)


def write_safetensors(path, tensors, metadata=DEFAULT_METADATA):
    """Write tensors to a safetensors file with ``safetensors.numpy.save_file``, atomically.

    The file appears under ``path`` only once complete (see :func:`hubert_tf.files.atomic_files`);
    the bytes are the library's, so other safetensors readers load it.

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
    path = os.fspath(path)
    directory, filename = os.path.split(os.path.abspath(path))
    with atomic_files(directory) as files:
        write_safetensors_to(files.path(filename), tensors, metadata)


def write_safetensors_to(path, tensors, metadata=DEFAULT_METADATA):
    """:func:`write_safetensors` without the atomic rename: for a path already staged by
    :func:`hubert_tf.files.atomic_files` (checks first, so bad input writes nothing)."""
    import safetensors.numpy

    if metadata is not None:
        if not hasattr(metadata, "items") or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise ValueError(f"metadata must map strings to strings, got {metadata!r}")
        metadata = dict(metadata)
    prepared = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise ValueError(f"tensor names must be strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        array = np.asarray(value)
        _dtype_code(name, array)
        prepared[name] = _contiguous_little_endian(array)
    try:
        safetensors.numpy.save_file(prepared, path, metadata=metadata)
    except safetensors.SafetensorError as exc:  # pragma: no cover - the checks above come first
        raise ValueError(f"{path}: safetensors could not write the tensors ({exc})") from None
