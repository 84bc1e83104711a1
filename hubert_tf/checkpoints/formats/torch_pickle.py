"""Read PyTorch ``torch.save`` checkpoints (``pytorch_model.bin``) without torch and without
running any code from the file.

A ``torch.save`` file is a pickle whose tensors refer to separately stored raw buffers
("storages"). Two containers exist:

* zip (PyTorch >= 1.6, the default): ``<folder>/data.pkl`` holds the pickle,
  ``<folder>/data/<key>`` each storage's bytes, ``<folder>/byteorder`` ``little`` or
  ``big`` (absent: little). ``<folder>`` is any name (torch uses the file's stem).
* legacy stream (``_use_new_zipfile_serialization=False``, PyTorch < 1.6): pickles of a magic
  number, the protocol version (1001) and ``sys_info``; then the object pickle; then a pickle
  of the storage keys; then per key an int64 element count and the raw little-endian bytes.
  The even older tar container (PyTorch < 0.4) is refused with a clear error.

Unpickling is restricted: ``find_class`` resolves only the handful of globals torch uses to
describe tensors, each mapped to our own harmless stand-in (no torch import, nothing from the
file is ever called). Any other global raises :class:`UnsafeCheckpointError` naming it. Before
unpickling, every pickle is scanned opcode by opcode (``pickletools.genops``) to refuse
opcodes torch never writes and memo indices that would make the C unpickler allocate huge
tables. Tensors are rebuilt afterwards as numpy views of the storages (strides and storage
offsets honoured, tensors sharing a storage share memory); with ``mmap=True`` the storages of
an uncompressed zip (what torch writes) are memory-mapped copy-on-write, so loading does not
copy the weights.
"""

import io
import math
import os
import pickle
import pickletools
import struct
import tarfile
import zipfile

import numpy as np

from hubert_tf.checkpoints.formats.safetensors import bfloat16_bits_to_float32

__all__ = ["UnsafeCheckpointError", "load_torch_pickle", "read_torch_bin"]

# The legacy stream format's first two pickles.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# data.pkl / each legacy pickle holds only structure (tensor bytes live elsewhere): ~100 kB
# for a 7B-parameter model. A far larger one is not a checkpoint we should read into memory.
_MAX_PICKLE_BYTES = 1 << 28
# Opcodes torch never writes; INST/OBJ/EXT* would reach globals by other routes.
_FORBIDDEN_OPCODES = {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEWOBJ_EX", "PERSID"}
_MEMO_PUT_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT"}
_MAX_NESTING = 100
_MAX_ELEMENTS = 1 << 48


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint pickle asked for a global (callable or class) that is not allowed.

    Subclasses both ``pickle.UnpicklingError`` and ``ValueError``, so code that catches
    ``ValueError`` for corrupt files also catches this.
    """


class _ElementType:
    """A torch storage class or dtype seen in the pickle: only its element layout matters."""

    __slots__ = ("torch_name", "dtype", "is_bfloat16")

    def __init__(self, torch_name, dtype, is_bfloat16=False):
        self.torch_name = torch_name
        self.dtype = np.dtype(dtype)  # little-endian layout of one element
        self.is_bfloat16 = is_bfloat16

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(f"refusing to call {self.torch_name}")

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refusing to set state on {self.torch_name}")


class _TensorClass:
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` as arguments of rebuild calls."""

    __slots__ = ("torch_name",)

    def __init__(self, torch_name):
        self.torch_name = torch_name

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(f"refusing to call {self.torch_name}")

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refusing to set state on {self.torch_name}")


class _StorageRef:
    """A storage named by a persistent id: ``key`` in the file, ``numel`` elements of ``etype``.

    ``view`` is ``(element_offset, numel)`` inside storage ``key`` for the legacy format's
    storage views, else ``None``.
    """

    __slots__ = ("key", "etype", "numel", "view")

    def __init__(self, key, etype, numel, view=None):
        self.key, self.etype, self.numel, self.view = key, etype, numel, view

    def __setstate__(self, state):
        raise pickle.UnpicklingError("refusing to set state on a storage")


class _TensorRef:
    """A tensor as the pickle describes it, turned into a numpy array after unpickling."""

    __slots__ = ("storage", "offset", "shape", "strides", "etype")

    def __init__(self, storage, offset, shape, strides, etype=None):
        if not isinstance(storage, _StorageRef):
            raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
        shape, strides = _int_tuple(shape, "size"), _int_tuple(strides, "stride")
        if type(offset) is not int or offset < 0:
            raise pickle.UnpicklingError(f"invalid storage offset {offset!r}")
        if len(shape) != len(strides) or len(shape) > 64:
            raise pickle.UnpicklingError(f"tensor size {shape} does not match stride {strides}")
        if any(d < 0 for d in shape) or any(s < 0 for s in strides):
            raise pickle.UnpicklingError(f"negative tensor size {shape} or stride {strides}")
        if etype is not None and not isinstance(etype, _ElementType):
            raise pickle.UnpicklingError("tensor dtype is not a torch dtype")
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides
        self.etype = etype or storage.etype

    def __setstate__(self, state):
        raise pickle.UnpicklingError("refusing to set state on a tensor")


class _StateDict(dict):
    """``collections.OrderedDict`` stand-in; keeps ``_metadata`` set through pickle BUILD."""

    def __setstate__(self, state):
        # Only a plain attribute dict (what OrderedDict's reduce produces) is accepted.
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError("unexpected state for an OrderedDict")
        self.__dict__.update(state)


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of ints, got {type(value).__name__}")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride, etype=dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data)


_REBUILD_FUNCTIONS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
                      _rebuild_parameter_with_state)  # fmt: skip


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch's wrapper for tensor subclasses: only plain tensors/parameters are accepted.
    if (not isinstance(func, _Allowed) or func.function not in _REBUILD_FUNCTIONS
            or not isinstance(new_type, _TensorClass) or not isinstance(args, tuple)):  # fmt: skip
        raise pickle.UnpicklingError("unsupported tensor subclass in checkpoint")
    return func(*args)


def _torch_size(dims=()):
    return _int_tuple(dims, "size")


def _encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError("unsupported _codecs.encode call")
    return text.encode(encoding)


def _empty_bytes(*args):
    if args:
        raise pickle.UnpicklingError("refusing builtins.bytes with arguments")
    return b""


def _element_types():
    types = {}
    storages = {
        "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
        "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
        "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16",
    }  # fmt: skip
    for name, dtype in storages.items():
        types[("torch", name)] = _ElementType(f"torch.{name}", dtype, is_bfloat16=name == "BFloat16Storage")
    for module in ("torch", "torch.storage"):
        types[(module, "UntypedStorage")] = _ElementType("torch.UntypedStorage", "u1")
    dtypes = {
        ("float32", "float"): "<f4", ("float64", "double"): "<f8", ("float16", "half"): "<f2",
        ("bfloat16",): "<u2", ("int64", "long"): "<i8", ("int32", "int"): "<i4", ("int16", "short"): "<i2",
        ("int8",): "i1", ("uint8",): "u1", ("bool",): "?", ("complex64", "cfloat"): "<c8",
        ("complex128", "cdouble"): "<c16",
    }  # fmt: skip
    for names, dtype in dtypes.items():
        for name in names:
            types[("torch", name)] = _ElementType(f"torch.{name}", dtype, is_bfloat16=name == "bfloat16")
    return types


class _Allowed:
    """An allowed callable, wrapped so a pickle cannot alter it (BUILD on a bare function
    would write into the function's ``__dict__`` or set attributes like ``__defaults__``)."""

    __slots__ = ("name", "function")

    def __init__(self, name, function):
        self.name, self.function = name, function

    def __call__(self, *args):
        return self.function(*args)

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refusing to set state on {self.name}")


def _allowed(module, name, function):
    return (module, name), _Allowed(f"{module}.{name}", function)


_ALLOWED_GLOBALS = dict(
    [
        _allowed("torch._utils", "_rebuild_tensor", _rebuild_tensor),
        _allowed("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor_v2),
        _allowed("torch._utils", "_rebuild_tensor_v3", _rebuild_tensor_v3),
        _allowed("torch._utils", "_rebuild_parameter", _rebuild_parameter),
        _allowed("torch._utils", "_rebuild_parameter_with_state", _rebuild_parameter_with_state),
        _allowed("torch._tensor", "_rebuild_from_type_v2", _rebuild_from_type_v2),
        _allowed("torch", "Size", _torch_size),
        # Instances are built through this; BUILD on the class itself fails (unbound call).
        _allowed("collections", "OrderedDict", _StateDict),
        _allowed("_codecs", "encode", _encode),
        _allowed("builtins", "bytes", _empty_bytes),
        _allowed("__builtin__", "bytes", _empty_bytes),  # protocol-2 name; find_class sees it unmapped
    ]
)
_ALLOWED_GLOBALS.update({
    ("torch", "Tensor"): _TensorClass("torch.Tensor"),
    ("torch._tensor", "Tensor"): _TensorClass("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _TensorClass("torch.nn.Parameter"),
    **_element_types(),
})  # fmt: skip


def _forbidden(path, module, name):
    return UnsafeCheckpointError(f"{path}: refusing to load global '{module}.{name}'")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, persistent_load):
        super().__init__(file)
        self._path = path
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise _forbidden(self._path, module, name)
        return target

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent_load(pid)


def _scan_pickle(path, what, data):
    """Check one pickle's opcodes before it is unpickled; return the position after STOP."""
    ops = 0
    for opcode, arg, pos in pickletools.genops(data):
        ops += 1
        if opcode.name in _FORBIDDEN_OPCODES:
            raise pickle.UnpicklingError(f"opcode {opcode.name} at byte {pos}, which torch never writes")
        if opcode.name in _MEMO_PUT_OPCODES and arg > ops:
            # The pickler numbers memo entries 0, 1, 2...; a larger index would only make
            # the unpickler allocate a memo table of that size.
            raise pickle.UnpicklingError(f"memo index {arg} at byte {pos} is out of range")
        if opcode.name == "GLOBAL":
            module, _, name = arg.partition(" ")
            if (module, name) not in _ALLOWED_GLOBALS:
                raise _forbidden(path, module, name)
        if opcode.name == "STOP":
            return pos + 1
    raise pickle.UnpicklingError(f"{what} has no STOP opcode")


def _unpickle(path, what, data, persistent_load=None):
    """Safely unpickle ``data`` (bytes); errors other than forbidden globals become ValueError."""
    try:
        _scan_pickle(path, what, io.BytesIO(data))
        return _RestrictedUnpickler(io.BytesIO(data), path, persistent_load).load()
    except UnsafeCheckpointError:
        raise
    except MemoryError:
        raise ValueError(f"{path}: {what} is too large or corrupt") from None
    except Exception as exc:  # any malformed pickle: EOFError, UnpicklingError, TypeError...
        raise ValueError(f"{path}: corrupt pickle in {what}: {type(exc).__name__}: {exc}") from None


# --- materializing tensors ------------------------------------------------------------------


class _Materializer:
    """Turns :class:`_TensorRef` objects into numpy arrays, loading each storage once."""

    def __init__(self, path, load_storage_bytes, big_endian, bf16_as_float32):
        self.path = path
        self._load = load_storage_bytes  # (key, nbytes) -> 1-D uint8 array of exactly nbytes
        self._big_endian = big_endian
        self._bf16_as_float32 = bf16_as_float32
        self._storages = {}
        self._converted = {}  # id(object) -> converted object, so shared parts convert once
        self._active = set()  # ids of containers being converted (detects cycles)

    def _storage_bytes(self, storage):
        key = (storage.key, storage.etype.dtype.itemsize)
        if key not in self._storages:
            self._storages[key] = self._load(storage.key, storage.numel * storage.etype.dtype.itemsize)
        return self._storages[key]

    def array(self, ref):
        storage = ref.storage
        raw = self._storage_bytes(storage)
        if storage.view is not None:  # legacy storage view: a slice of the root storage
            start = storage.view[0] * storage.etype.dtype.itemsize
            raw = raw[start : start + storage.view[1] * storage.etype.dtype.itemsize]
        dtype = ref.etype.dtype.newbyteorder(">") if self._big_endian else ref.etype.dtype
        usable = len(raw) - len(raw) % dtype.itemsize
        elements = raw[:usable].view(dtype)

        if math.prod(ref.shape) > _MAX_ELEMENTS:
            raise ValueError(f"{self.path}: tensor of size {list(ref.shape)} is implausibly large")
        if math.prod(ref.shape) == 0:
            array = np.zeros(ref.shape, dtype=dtype)
        else:
            last = ref.offset + sum((d - 1) * s for d, s in zip(ref.shape, ref.strides))
            if last >= len(elements):
                raise ValueError(
                    f"{self.path}: tensor of size {list(ref.shape)} (stride {list(ref.strides)}, offset "
                    f"{ref.offset}) reads past the end of storage {storage.key!r} ({len(elements)} elements)"
                )
            contiguous = _contiguous_strides(ref.shape)
            if ref.strides == contiguous:
                array = elements[ref.offset : ref.offset + math.prod(ref.shape)].reshape(ref.shape)
            else:  # a view with its own layout; shares memory with the storage
                array = np.lib.stride_tricks.as_strided(
                    elements[ref.offset :],
                    shape=ref.shape,
                    strides=tuple(s * dtype.itemsize for s in ref.strides),
                    writeable=0 not in ref.strides,
                )
        if self._big_endian and dtype.itemsize > 1:
            array = array.astype(dtype.newbyteorder("="))
        if ref.etype.is_bfloat16:
            array = _bfloat16(array, self._bf16_as_float32)
        return array.view(np.ndarray) if isinstance(array, np.memmap) else array

    def tree(self, obj, depth=0):
        """Replace every tensor in nested dicts/lists/tuples with its array."""
        if not isinstance(obj, (_TensorRef, dict, list, tuple)):
            if isinstance(obj, (_StorageRef, _ElementType, _TensorClass)):
                raise ValueError(f"{self.path}: checkpoint holds a bare {type(obj).__name__[1:]}, not a tensor")
            return obj
        if id(obj) in self._converted:
            return self._converted[id(obj)]
        if id(obj) in self._active or depth > _MAX_NESTING:
            raise ValueError(f"{self.path}: checkpoint object is recursive or nested too deeply")
        self._active.add(id(obj))
        if isinstance(obj, _TensorRef):
            result = self.array(obj)
        elif isinstance(obj, dict):
            result = {k: self.tree(v, depth + 1) for k, v in obj.items()}
        elif isinstance(obj, list):
            result = [self.tree(v, depth + 1) for v in obj]
        else:
            result = tuple(self.tree(v, depth + 1) for v in obj)
        self._active.discard(id(obj))
        self._converted[id(obj)] = result
        return result


def _contiguous_strides(shape):
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def _bfloat16(bits, as_float32):
    if as_float32:
        return bfloat16_bits_to_float32(bits)
    import ml_dtypes  # only needed on request; ships with TensorFlow

    return np.ascontiguousarray(bits).view(ml_dtypes.bfloat16)


# --- the two containers ------------------------------------------------------------------------


def _storage_persistent_load(path, storages, legacy):
    """persistent_load for torch's ``("storage", type, key, location, numel[, view])`` ids."""

    def load(pid):
        if not isinstance(pid, tuple) or len(pid) != (6 if legacy else 5) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id (a {type(pid).__name__}, not a torch storage id)")
        _, etype, key, _location, numel = pid[:5]
        if not isinstance(etype, _ElementType) or not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError("malformed storage persistent id")
        known = storages.get(key)
        if known is None:
            known = storages[key] = _StorageRef(key, etype, numel)
        elif known.etype.dtype != etype.dtype or known.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} is described twice with different types or sizes")
        if legacy and pid[5] is not None:
            view = pid[5]
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                    and all(type(v) is int and v >= 0 for v in view[1:])):  # fmt: skip
                raise pickle.UnpicklingError("malformed storage view")
            view_key, offset, size = view
            if offset + size > numel:
                raise pickle.UnpicklingError(f"storage view {view_key!r} runs past its storage")
            return _StorageRef(key, etype, numel, view=(offset, size))
        return known

    return load


def _zip_member_reader(path, handle, archive, mmap):
    """Return ``load(member_name, nbytes) -> uint8 array`` for members of a torch zip."""
    file_size = os.fstat(handle.fileno()).st_size
    whole = []  # the whole-file memmap, created on first use

    def load(member, nbytes):
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise ValueError(f"{path}: storage record {member!r} is missing") from None
        if info.file_size < nbytes:
            raise ValueError(f"{path}: storage record {member!r} holds {info.file_size} bytes, needs {nbytes}")
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        if mmap and info.compress_type == zipfile.ZIP_STORED:
            # torch stores members uncompressed: map the bytes in place instead of copying.
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: bad local zip header for {member!r}")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            if start + nbytes > file_size:
                raise ValueError(f"{path}: storage record {member!r} runs past the end of the file (truncated?)")
            if not whole:
                whole.append(np.memmap(handle, dtype=np.uint8, mode="c", shape=(file_size,)))
            return whole[0][start : start + nbytes]
        with archive.open(info) as member_file:
            data = bytearray(member_file.read(nbytes))
        if len(data) != nbytes:
            raise ValueError(f"{path}: storage record {member!r} is truncated")
        return np.frombuffer(data, dtype=np.uint8)

    return load


def _load_zip(path, handle, mmap, bf16_as_float32):
    archive = zipfile.ZipFile(handle)
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        found = "no" if not pickles else f"{len(pickles)}"
        raise ValueError(f"{path}: zip archive has {found} '<folder>/data.pkl' record; not a torch.save file")
    prefix = pickles[0][: -len("data.pkl")]
    info = archive.getinfo(pickles[0])
    if info.file_size > _MAX_PICKLE_BYTES:
        raise ValueError(f"{path}: {pickles[0]} is {info.file_size} bytes; too large for a checkpoint pickle")
    data = archive.read(info)
    byteorder = "little"
    if prefix + "byteorder" in archive.namelist():
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")

    storages = {}
    obj = _unpickle(path, pickles[0], data, _storage_persistent_load(path, storages, legacy=False))
    read_member = _zip_member_reader(path, handle, archive, mmap)
    materializer = _Materializer(
        path, lambda key, nbytes: read_member(f"{prefix}data/{key}", nbytes), byteorder == "big", bf16_as_float32
    )
    return materializer.tree(obj)


def _next_pickle(path, what, handle):
    """Read the pickle starting at the handle's position (bounded) and return its bytes."""
    start = handle.tell()
    try:
        length = _scan_pickle(path, what, handle) - start
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: corrupt pickle in {what}: {type(exc).__name__}: {exc}") from None
    if length > _MAX_PICKLE_BYTES:
        raise ValueError(f"{path}: {what} is {length} bytes; too large for a checkpoint pickle")
    handle.seek(start)
    return handle.read(length)


def _load_legacy(path, handle, mmap, bf16_as_float32):
    magic = _unpickle(path, "the magic number", _next_pickle(path, "the magic number", handle))
    if magic != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)")
    protocol = _unpickle(path, "the protocol version", _next_pickle(path, "the protocol version", handle))
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unsupported legacy checkpoint protocol {protocol!r}")
    # sys_info records the writer's byte order, but torch writes legacy storages (and their
    # element counts) little-endian on every machine, so only its presence is checked.
    sys_info = _unpickle(path, "sys_info", _next_pickle(path, "sys_info", handle))
    if not isinstance(sys_info, dict):
        raise ValueError(f"{path}: malformed legacy sys_info record")

    storages = {}
    obj = _unpickle(path, "the object pickle", _next_pickle(path, "the object pickle", handle),
                    _storage_persistent_load(path, storages, legacy=True))  # fmt: skip
    keys = _unpickle(path, "the storage key list", _next_pickle(path, "the storage key list", handle))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{path}: malformed legacy storage key list")

    # Storage records follow back to back: int64 element count, then the bytes.
    file_size = os.fstat(handle.fileno()).st_size
    position = handle.tell()
    spans = {}
    for key in keys:
        if key not in storages:
            raise ValueError(f"{path}: storage {key!r} is listed but no tensor describes its type")
        handle.seek(position)
        header = handle.read(8)
        if len(header) != 8:
            raise ValueError(f"{path}: storage {key!r} record is truncated")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storages[key].etype.dtype.itemsize
        if numel < 0 or position + 8 + nbytes > file_size:
            raise ValueError(f"{path}: storage {key!r} record runs past the end of the file (truncated?)")
        spans[key] = (position + 8, nbytes)
        position += 8 + nbytes

    whole = []

    def load(key, nbytes):
        if key not in spans:
            raise ValueError(f"{path}: storage {key!r} has no data record")
        start, available = spans[key]
        if available < nbytes:
            raise ValueError(f"{path}: storage {key!r} holds {available} bytes, needs {nbytes}")
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        if mmap:
            if not whole:
                whole.append(np.memmap(handle, dtype=np.uint8, mode="c", shape=(file_size,)))
            return whole[0][start : start + nbytes]
        handle.seek(start)
        data = bytearray(handle.read(nbytes))
        if len(data) != nbytes:
            raise ValueError(f"{path}: storage {key!r} record is truncated")
        return np.frombuffer(data, dtype=np.uint8)

    return _Materializer(path, load, False, bf16_as_float32).tree(obj)


def _load(path, mmap, bf16_as_float32):
    path = os.fspath(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
        handle.seek(0)
        try:
            if head[:2] == b"PK":  # a local file header, or the end record of an empty zip
                return _load_zip(path, handle, mmap, bf16_as_float32)
            if _is_tar(handle):
                raise ValueError(
                    f"{path}: PyTorch < 0.4 tar checkpoints are not supported; re-save it with a recent "
                    "PyTorch (torch.save(torch.load(f), f))"
                )
            return _load_legacy(path, handle, mmap, bf16_as_float32)
        except (ValueError, OSError):
            raise
        except Exception as exc:  # zipfile.BadZipFile, EOFError, struct.error, MemoryError...
            raise ValueError(f"{path}: corrupt PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def _is_tar(handle):
    try:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            archive.next()
        return True
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return False
    finally:
        handle.seek(0)


def load_torch_pickle(path, *, mmap=True, bf16_as_float32=True):
    """Load any ``torch.save`` object built from tensors, dicts, lists, tuples and scalars.

    Like :func:`read_torch_bin` but returns the whole object (e.g. a training checkpoint
    ``{"model": {...}, "step": 3}``) with every tensor replaced by a numpy array, every
    ``OrderedDict`` by a ``dict``.

    Args:
        path: str or os.PathLike. The checkpoint file.
        mmap: bool. Memory-map storages (copy-on-write) instead of reading them. Defaults to ``True``.
        bf16_as_float32: bool. Return bfloat16 tensors as exact float32 copies, else as
            ``ml_dtypes.bfloat16`` arrays. Defaults to ``True``.

    Returns:
        The unpickled object.

    Raises:
        UnsafeCheckpointError: the pickle references a global outside the allow-list (also a
            ``pickle.UnpicklingError`` and a ``ValueError``).
        ValueError: the file is not a PyTorch checkpoint, or is truncated or corrupt.
        OSError: the file cannot be opened or read.
    """
    return _load(path, mmap, bf16_as_float32)


def read_torch_bin(path, *, mmap=True, bf16_as_float32=True):
    """Read a PyTorch state dict (``pytorch_model.bin``) as ``name -> numpy array``.

    Never imports torch and never executes code from the file (see the module docstring).

    Args:
        path: str or os.PathLike. A ``torch.save`` file: zip format (any top-level folder
            name, either byte order) or the legacy pre-1.6 stream format.
        mmap: bool. Memory-map the storages copy-on-write (no copy, writable arrays that
            never touch the file). With ``False`` storages are read into memory. Defaults
            to ``True``.
        bf16_as_float32: bool. Return bfloat16 tensors as exact float32 copies, else as
            ``ml_dtypes.bfloat16`` arrays. Defaults to ``True``.

    Returns:
        dict[str, np.ndarray]. Tensors in the state dict's order, native byte order, shapes
        as saved. Tensors that share a storage in the file share memory here (views keep
        torch's strides, so e.g. a saved transpose is a non-contiguous array).

    Raises:
        UnsafeCheckpointError: the pickle references a global outside the allow-list, e.g.
            ``"pytorch_model.bin: refusing to load global 'os.system'"``.
        ValueError: not a PyTorch checkpoint, truncated or corrupt, or not a flat mapping of
            string names to tensors (the message names the file and the problem).
        OSError: the file cannot be opened or read.

    Example:

    >>> state = read_torch_bin("tests/fixtures/formats/torch_pickle/state_zip.bin")  # doctest: +SKIP
    >>> state["encoder.weight"].shape  # doctest: +SKIP
    (4, 3)
    """
    obj = _load(path, mmap, bf16_as_float32)
    if not isinstance(obj, dict):
        raise ValueError(f"{os.fspath(path)}: checkpoint holds a {type(obj).__name__}, not a state dict")
    for name, value in obj.items():
        if not isinstance(name, str):
            raise ValueError(f"{os.fspath(path)}: state dict key {name!r} is not a string")
        if not isinstance(value, np.ndarray):
            raise ValueError(
                f"{os.fspath(path)}: state dict entry {name!r} is a {type(value).__name__}, not a tensor"
            )
    return obj
