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
file is ever called). Any other global raises :class:`UnsafeCheckpointError` naming it.

The file is hostile until proven otherwise, so everything it declares is bounded *before* the
work it would cause (the caps below are module constants):

* Each pickle is scanned opcode by opcode (``pickletools.genops``) before it is unpickled: at
  most ``_MAX_PICKLE_BYTES`` (32 MiB) and ``_MAX_OPCODES`` (1,000,000) opcodes; a state dict
  needs ~31 opcodes and ~115 bytes per tensor, so that is room for ~30,000 tensors while an
  opcode bomb costs at most ~1 s and ~100 MB. The scan simulates the pickle stack to refuse
  containers nested more than ``_MAX_NESTING`` (64) deep, so hashing a deep tuple can never
  recurse in C; opcodes torch never writes and out-of-range memo indices are refused.
* After unpickling, objects are walked iteratively (no Python recursion on the file's depth),
  again refusing nesting deeper than 64 levels and cycles.
* A tensor must fit inside its storage: its last element inside, and its materialised size no
  larger than the storage (stride-0 or overlapping views may exceed the storage only up to
  ``_MAX_EXPANDED_BYTES``, 4 KiB, which keeps torch's ``expand()`` of tiny buffers readable).
  Reading a whole file, all views together may materialise at most ``_MAX_VIEWS_RATIO`` (8)
  times the storage bytes they use (+ 4 KiB per tensor).
* Zip members that no tensor needs are never read. Each member read is a bounded stream that
  stops at the bytes its tensors declare; members whose declared size exceeds deflate's
  maximum ratio (1032:1) to their compressed size, overlapping members, and central
  directories over ``_MAX_CENTRAL_DIRECTORY`` (16 MiB, ~200,000 members) are refused.

:func:`plan_torch_bin` describes every tensor (name, dtype, shape, byte count) from the pickle
alone and reads each one only when asked; :func:`read_torch_bin` reads them all. With
``mmap=True`` storages of uncompressed members (what torch writes) are memory-mapped
copy-on-write, so reading does not copy the weights.
"""

import contextlib
import functools
import io
import math
import os
import pickle
import pickletools
import struct
import tarfile
import weakref
import zipfile
import zlib

import numpy as np

from hubert_tf.checkpoints.formats.records import TensorRecord
from hubert_tf.checkpoints.formats.safetensors import bfloat16_bits_to_float32

__all__ = ["UnsafeCheckpointError", "load_torch_pickle", "plan_torch_bin", "read_torch_bin"]

# The legacy stream format's first two pickles.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# A pickle holds only structure (tensor bytes live elsewhere): ~115 bytes and ~31 opcodes per
# tensor, so a 30,000-tensor state dict is ~3.5 MB and ~1M opcodes. Both caps bound the time
# and memory of scanning and unpickling (~100 bytes of Python objects per opcode at worst).
_MAX_PICKLE_BYTES = 32 << 20
_MAX_OPCODES = 1_000_000
# Containers nested deeper than this are refused (a state dict is 2-4 deep, a training
# checkpoint a few more); far below where hashing or walking could exhaust the C stack.
_MAX_NESTING = 64
# Opcodes torch never writes; INST/OBJ/EXT* would reach globals by other routes, the buffer
# opcodes need out-of-band data.
_FORBIDDEN_OPCODES = {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEWOBJ_EX", "PERSID", "NEXT_BUFFER",
                      "READONLY_BUFFER"}  # fmt: skip
_MAX_ELEMENTS = 1 << 48
_MAX_DIMS = 64  # numpy's limit
# A view may materialise more bytes than its storage holds only up to this (expand() of a tiny
# buffer); beyond, a 2-byte storage could become a multi-GB array.
_MAX_EXPANDED_BYTES = 4096
# All tensors read together may materialise at most this many times the storage bytes they use.
_MAX_VIEWS_RATIO = 8
# zip containers: deflate cannot exceed ~1032:1; torch's member names are ~20 bytes, so 16 MiB
# of central directory is ~200,000 members (~100 MB of zipfile bookkeeping at most).
_MAX_DEFLATE_RATIO = 1032
_MAX_CENTRAL_DIRECTORY = 16 << 20
_MAX_BYTEORDER_BYTES = 16
_READ_CHUNK = 1 << 20


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
        if len(shape) != len(strides) or len(shape) > _MAX_DIMS:
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


# --- scanning a pickle before it is unpickled --------------------------------------------------


class _PickleTooLarge(Exception):
    pass


class _BoundedReader:
    """Read-only file-like view of ``handle`` from its position, at most ``limit`` bytes.

    ``pickletools.genops`` reads opcode arguments with ``read(n)`` / ``readline()`` where ``n``
    comes from the file (up to 2**64); this refuses any read past the limit before it happens.
    """

    def __init__(self, handle, limit):
        self._handle, self._left = handle, limit

    def tell(self):
        return self._handle.tell()

    def read(self, n=-1):
        if n is None or n < 0 or n > self._left:
            raise _PickleTooLarge
        data = self._handle.read(n)
        self._left -= len(data)
        return data

    def readline(self, limit=-1):
        line = self._handle.readline(self._left + 1)
        if len(line) > self._left:
            raise _PickleTooLarge
        self._left -= len(line)
        return line


# How each opcode changes the nesting depth of what is on the stack (see _scan_pickle).
_NEW_FROM_MARK = {"TUPLE", "LIST", "DICT", "FROZENSET"}
_NEW_FROM_ITEMS = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_NEW_EMPTY = {"EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"}
_ADD_FROM_MARK = {"APPENDS", "SETITEMS", "ADDITEMS"}
_ADD_ITEMS = {"APPEND": 1, "SETITEM": 2, "BUILD": 1}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_STACK_EFFECT = {op.name: (len(op.stack_before), len(op.stack_after)) for op in pickletools.opcodes}


def _scan_pickle(path, what, stream):
    """Check one pickle's opcodes before it is unpickled; return the position after STOP.

    The pickle stack is simulated with one number per item, the nesting depth of what it will
    hold, so containers deeper than ``_MAX_NESTING`` are refused before any object exists
    (hashing a million-deep tuple overflows the C stack: SIGSEGV). Depths of tuples and frozensets,
    the only hashable containers, are exact; mutable containers can be filled through memo
    aliases after their depth was recorded, which the walk after unpickling catches.
    """
    stack, marks, memo = [], [], {}
    ops = 0

    def pop(count=1):
        if count > len(stack) - (marks[-1] if marks else 0):
            raise pickle.UnpicklingError(f"stack underflow at byte {pos}")
        items = stack[len(stack) - count :]
        del stack[len(stack) - count :]
        return items

    def pop_mark():
        if not marks:
            raise pickle.UnpicklingError(f"no MARK before byte {pos}")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def push(depth):
        if depth > _MAX_NESTING:
            raise ValueError(
                f"{path}: {what} is nested too deeply (containers more than {_MAX_NESTING} levels deep at byte {pos})"
            )
        stack.append(depth)

    def deepen(depth):  # the container on top gains an item of this depth
        if not stack or len(stack) == (marks[-1] if marks else 0):
            raise pickle.UnpicklingError(f"stack underflow at byte {pos}")
        push(max(stack.pop(), depth + 1))

    for opcode, arg, pos in pickletools.genops(stream):
        ops += 1
        name = opcode.name
        if ops > _MAX_OPCODES:
            raise ValueError(f"{path}: {what} has more than {_MAX_OPCODES} opcodes; not a checkpoint pickle")
        if name in _FORBIDDEN_OPCODES:
            raise pickle.UnpicklingError(f"opcode {name} at byte {pos}, which torch never writes")
        if name == "GLOBAL":
            module, _, attribute = arg.partition(" ")
            if (module, attribute) not in _ALLOWED_GLOBALS:
                raise _forbidden(path, module, attribute)
        if name == "MARK":
            marks.append(len(stack))
        elif name == "POP_MARK":
            pop_mark()
        elif name in _NEW_FROM_MARK:
            push(1 + max(pop_mark(), default=0))
        elif name in _NEW_FROM_ITEMS:
            push(1 + max(pop(_NEW_FROM_ITEMS[name])))
        elif name in _NEW_EMPTY:
            push(1)
        elif name in _ADD_FROM_MARK:
            deepen(max(pop_mark(), default=-1))
        elif name in _ADD_ITEMS:
            deepen(max(pop(_ADD_ITEMS[name])))
        elif name in _MEMO_GET:
            if arg not in memo:
                raise pickle.UnpicklingError(f"memo index {arg} at byte {pos} was never stored")
            push(memo[arg])
        elif name in _MEMO_PUT or name == "MEMOIZE":
            index = len(memo) if name == "MEMOIZE" else arg
            if index > ops:
                # The pickler numbers memo entries 0, 1, 2...; a larger index would only make
                # the unpickler allocate a memo table of that size.
                raise pickle.UnpicklingError(f"memo index {index} at byte {pos} is out of range")
            memo[index] = pop()[0]
            stack.append(memo[index])
        elif name == "DUP":
            push(pop()[0])
            push(stack[-1])
        elif name == "REDUCE":
            # Every allowed callable returns a tensor, a tuple of ints, bytes or a dict built
            # from its arguments: never deeper than the argument tuple's contents.
            push(max(pop(2)[1] - 1, 0))
        elif name == "NEWOBJ":
            push(pop(2)[1])
        elif name == "STOP":
            pop()
            return pos + 1
        else:  # scalars, GLOBAL, STACK_GLOBAL, BINPERSID (a storage), PROTO, FRAME, POP
            before, after = _STACK_EFFECT[name]
            pop(before)
            for _ in range(after):
                push(0)
    raise pickle.UnpicklingError(f"{what} has no STOP opcode")


@contextlib.contextmanager
def _pickle_errors(path, what):
    """Turn whatever a malformed pickle raises into a ValueError naming the file (forbidden
    globals stay UnsafeCheckpointError; errors that already name the file pass through)."""
    try:
        yield
    except UnsafeCheckpointError:
        raise
    except _PickleTooLarge:
        raise ValueError(f"{path}: {what} is truncated, corrupt or larger than {_MAX_PICKLE_BYTES} bytes") from None
    except MemoryError:
        raise ValueError(f"{path}: {what} is too large or corrupt") from None
    except Exception as exc:  # EOFError, UnpicklingError, TypeError, genops' ValueError...
        if isinstance(exc, ValueError) and str(exc).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: corrupt pickle in {what}: {type(exc).__name__}: {exc}") from None


def _unpickle(path, what, data, persistent_load=None):
    """Scan, then safely unpickle ``data`` (bytes)."""
    with _pickle_errors(path, what):
        _scan_pickle(path, what, io.BytesIO(data))  # in memory: reads past the end return short
        return _RestrictedUnpickler(io.BytesIO(data), path, persistent_load).load()


# --- tensor layouts: where each tensor's bytes are, checked against its storage -----------------


class _Layout:
    """Where one tensor's bytes lie in its storage: bytes ``[start, stop)`` of storage ``key``."""

    __slots__ = ("key", "start", "stop", "shape", "strides", "dtype", "is_bfloat16", "count", "storage_bytes")

    def __init__(self, key, start, stop, shape, strides, dtype, is_bfloat16, count, storage_bytes):
        self.key, self.start, self.stop, self.shape, self.strides = key, start, stop, shape, strides
        self.dtype, self.is_bfloat16, self.count, self.storage_bytes = dtype, is_bfloat16, count, storage_bytes


def _layout(path, ref):
    """Validate ``ref`` against its storage (no bytes read) and return its :class:`_Layout`."""
    storage, shape, strides = ref.storage, ref.shape, ref.strides
    storage_item = storage.etype.dtype.itemsize
    base, available = 0, storage.numel * storage_item
    if storage.view is not None:  # legacy storage view: a slice of the root storage
        base, available = storage.view[0] * storage_item, storage.view[1] * storage_item
    dtype = ref.etype.dtype
    if (any(d > _MAX_ELEMENTS for d in shape) or any(s > _MAX_ELEMENTS for s in strides)
            or ref.offset > _MAX_ELEMENTS or math.prod(max(d, 1) for d in shape) > _MAX_ELEMENTS):  # fmt: skip
        raise ValueError(f"{path}: tensor of size {list(shape)} is implausibly large")
    count = math.prod(shape)
    if count == 0:
        return _Layout(storage.key, base, base, shape, strides, dtype, ref.etype.is_bfloat16, 0, 0)
    elements = available // dtype.itemsize
    last = ref.offset + sum((d - 1) * s for d, s in zip(shape, strides))
    if last >= elements:
        raise ValueError(
            f"{path}: tensor of size {list(shape)} (stride {list(strides)}, offset {ref.offset}) reads past "
            f"the end of storage {storage.key!r} ({elements} elements)"
        )
    if count * dtype.itemsize > max(available, _MAX_EXPANDED_BYTES):
        raise ValueError(
            f"{path}: tensor of size {list(shape)} (stride {list(strides)}) would materialise "
            f"{count * dtype.itemsize} bytes from storage {storage.key!r} of {available} bytes; refusing a "
            "stride-0 or overlapping view larger than its storage"
        )
    start = base + ref.offset * dtype.itemsize
    return _Layout(storage.key, start, base + (last + 1) * dtype.itemsize, shape, strides, dtype,
                   ref.etype.is_bfloat16, count, storage.numel * storage_item)  # fmt: skip


def _contiguous_strides(shape):
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def _materialise(layout, raw, big_endian, bf16_as_float32):
    """The array of ``layout`` from ``raw``: its bytes ``[start, stop)`` as a uint8 array."""
    dtype = layout.dtype.newbyteorder(">") if big_endian else layout.dtype
    if layout.count == 0:
        array = np.zeros(layout.shape, dtype=layout.dtype)
    else:
        elements = raw.view(dtype)
        if layout.strides == _contiguous_strides(layout.shape):
            array = elements[: layout.count].reshape(layout.shape)
        else:  # a view with its own layout; shares memory with the storage
            array = np.lib.stride_tricks.as_strided(
                elements,
                shape=layout.shape,
                strides=tuple(s * dtype.itemsize for s in layout.strides),
                writeable=0 not in layout.strides,
            )
        if big_endian and dtype.itemsize > 1:
            array = array.astype(dtype.newbyteorder("="))
    if layout.is_bfloat16:
        array = _bfloat16(array, bf16_as_float32)
    return array


def _bfloat16(bits, as_float32):
    if as_float32:
        return bfloat16_bits_to_float32(bits)
    import ml_dtypes  # only needed on request; ships with TensorFlow

    return np.ascontiguousarray(bits).view(ml_dtypes.bfloat16)


class _Checkpoint:
    """An opened checkpoint: its storages (``source``) and how to turn layouts into arrays."""

    def __init__(self, file, source, big_endian, mmap, bf16_as_float32):
        self.file, self.path, self.source, self.big_endian = file, file.path, source, big_endian
        self.mmap, self.bf16_as_float32 = mmap, bf16_as_float32

    def layout(self, ref):
        self.source.check(ref.storage)
        return _layout(self.path, ref)

    def read(self, layout):
        """One tensor, reading only its own bytes (a :class:`TensorRecord`'s ``read``)."""
        raw = self.source.read(layout.key, layout.start, layout.stop, self.mmap) if layout.count else None
        return _materialise(layout, raw, self.big_endian, self.bf16_as_float32)

    def read_all(self, layouts):
        """Several tensors; each storage is read once, so tensors sharing one share memory.

        Each view fits its storage, but thousands of views of one storage would still add up:
        all of them together may materialise at most ``_MAX_VIEWS_RATIO`` times the bytes of
        the storages they use (tied weights and saved views are 1-3 times).
        """
        ends, stored, materialised = {}, {}, 0
        for layout in layouts.values():
            if layout.count:
                ends[layout.key] = max(ends.get(layout.key, 0), layout.stop)
                stored[layout.key] = layout.storage_bytes
                materialised += layout.count * layout.dtype.itemsize
        allowed = _MAX_VIEWS_RATIO * sum(stored.values()) + _MAX_EXPANDED_BYTES * len(layouts)
        if materialised > allowed:
            raise ValueError(
                f"{self.path}: its {len(layouts)} tensors would materialise {materialised} bytes from "
                f"{sum(stored.values())} bytes of storage (more than {_MAX_VIEWS_RATIO} times); refusing "
                "repeated views of the same storage"
            )
        prefixes = {key: self.source.read(key, 0, stop, self.mmap) for key, stop in ends.items()}
        return {
            name: _materialise(layout, prefixes[layout.key][layout.start : layout.stop] if layout.count else None,
                               self.big_endian, self.bf16_as_float32)  # fmt: skip
            for name, layout in layouts.items()
        }


# --- walking unpickled objects (iteratively: the file decides the depth) ------------------------

_BARE = {_StorageRef: "storage", _ElementType: "dtype or storage class", _TensorClass: "tensor class",
         _Allowed: "function"}  # fmt: skip


def _is_container(value):
    return isinstance(value, (dict, list, tuple))


def _items(container):
    return container.values() if isinstance(container, dict) else container


def _check_leaf(path, value):
    if type(value) in _BARE:
        raise ValueError(f"{path}: checkpoint holds a bare {_BARE[type(value)]}, not a tensor")


def _post_order(path, root):
    """Containers reachable from ``root``, each once, children before parents.

    Returns ``(containers, tensors)``. Refuses cycles and nesting deeper than ``_MAX_NESTING``
    (both the path walked and the height of shared substructures) without recursing.
    """
    order, heights, on_path, tensors = [], {}, set(), {}
    stack = [(root, 1, False)]
    while stack:
        obj, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(obj))
            height = 1 + max((heights[id(v)] for v in _items(obj) if _is_container(v)), default=0)
            if height > _MAX_NESTING:
                raise ValueError(f"{path}: checkpoint object is nested too deeply (more than {_MAX_NESTING} levels)")
            heights[id(obj)] = height
            order.append(obj)
            continue
        if id(obj) in heights:
            continue
        if id(obj) in on_path or depth > _MAX_NESTING:
            raise ValueError(f"{path}: checkpoint object is recursive or nested too deeply")
        on_path.add(id(obj))
        stack.append((obj, depth, True))
        for value in _items(obj):
            if _is_container(value):
                stack.append((value, depth + 1, False))
            elif isinstance(value, _TensorRef):
                tensors[id(value)] = value
            else:
                _check_leaf(path, value)
    return order, tensors


def _convert_tree(checkpoint, root):
    """``root`` with every tensor replaced by its array and every dict subclass by a dict."""
    if isinstance(root, _TensorRef):
        return checkpoint.read(checkpoint.layout(root))
    if not _is_container(root):
        _check_leaf(checkpoint.path, root)
        return root
    order, tensors = _post_order(checkpoint.path, root)
    arrays = checkpoint.read_all({key: checkpoint.layout(ref) for key, ref in tensors.items()})
    converted = {}

    def convert(value):
        if isinstance(value, _TensorRef):
            return arrays[id(value)]
        return converted[id(value)] if _is_container(value) else value

    for obj in order:
        if isinstance(obj, dict):
            converted[id(obj)] = {k: convert(v) for k, v in obj.items()}
        elif isinstance(obj, list):
            converted[id(obj)] = [convert(v) for v in obj]
        else:
            converted[id(obj)] = tuple(convert(v) for v in obj)
    return converted[id(root)]


def _state_dict(path, obj):
    """Check that ``obj`` is a flat mapping of names to tensors (before anything is read)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: checkpoint holds a {_kind(obj)}, not a state dict")
    for name, value in obj.items():
        if not isinstance(name, str):
            raise ValueError(f"{path}: state dict key {name!r} is not a string")
        if not isinstance(value, _TensorRef):
            raise ValueError(f"{path}: state dict entry {name!r} is a {_kind(value)}, not a tensor")
    return obj


def _kind(value):
    if type(value) in _BARE:
        return _BARE[type(value)]
    for kind in (dict, list, tuple):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__


# --- the file itself --------------------------------------------------------------------------------


class _File:
    """The checkpoint file, opened once per plan or read: one descriptor and, on demand, one
    copy-on-write mapping of the whole file, however many tensors are read or mapped."""

    def __init__(self, path):
        self.path = path
        self.handle = open(path, "rb")  # also raises OSError for a missing file
        self._close = weakref.finalize(self, self.handle.close)  # a dropped plan closes its file
        self._map = None

    def size(self):
        return os.fstat(self.handle.fileno()).st_size

    def close(self):
        self._close()  # mapped arrays stay valid: the mapping holds its own descriptor

    def read(self, offset, length, what):
        """``length`` bytes at ``offset`` as a uint8 array; checks the file's current size first."""
        if offset + length > self.size():
            raise ValueError(f"{self.path}: {what} runs past the end of the file (truncated?)")
        self.handle.seek(offset)
        data = bytearray(length)
        if self.handle.readinto(data) != length:
            raise ValueError(f"{self.path}: {what} is truncated")
        return np.frombuffer(data, dtype=np.uint8)

    def map(self, offset, length, what):
        """Like :meth:`read`, but mapped copy-on-write (writable arrays that never touch the file).
        The size check comes first, so a file that shrank since it was planned raises, not SIGBUS."""
        size = self.size()
        if offset + length > size:
            raise ValueError(f"{self.path}: {what} runs past the end of the file (truncated?)")
        if self._map is None or offset + length > len(self._map):
            self._map = np.memmap(self.handle, dtype=np.uint8, mode="c", shape=(size,)).view(np.ndarray)
        return self._map[offset : offset + length]


# --- storages in a zip archive ------------------------------------------------------------------


class _Member:
    """A zip member as its central directory describes it (nothing read yet)."""

    __slots__ = ("name", "raw_name", "header_offset", "method", "flags", "compress_size", "file_size", "crc",
                 "end_offset")  # fmt: skip

    def __init__(self, info, end_offset):
        self.name = info.filename
        self.raw_name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        self.header_offset, self.method, self.flags = info.header_offset, info.compress_type, info.flag_bits
        self.compress_size, self.file_size, self.crc = info.compress_size, info.file_size, info.CRC
        self.end_offset = end_offset  # where the next member (or the central directory) starts


def _zip_members(path, handle):
    """Parse the central directory (bounded in size) into ``name -> _Member``."""
    end = zipfile._EndRecData(handle)
    if end is None:
        raise ValueError(f"{path}: corrupt PyTorch checkpoint (not a zip archive: no end of central directory)")
    if end[zipfile._ECD_SIZE] > _MAX_CENTRAL_DIRECTORY:
        raise ValueError(
            f"{path}: zip central directory is {end[zipfile._ECD_SIZE]} bytes (more than "
            f"{_MAX_CENTRAL_DIRECTORY}); too many members for a checkpoint"
        )
    handle.seek(0)
    with zipfile.ZipFile(handle) as archive:
        infos, start_dir = archive.infolist(), archive.start_dir
    starts = sorted({info.header_offset for info in infos} | {start_dir})
    following = {offset: starts[i + 1] if i + 1 < len(starts) else offset for i, offset in enumerate(starts)}
    counts = {}
    for info in infos:
        counts[info.header_offset] = counts.get(info.header_offset, 0) + 1
    members = {}
    for info in infos:
        # Two entries on one local header share their bytes (an overlap bomb): neither is readable.
        shared = counts[info.header_offset] > 1 or not 0 <= info.header_offset < start_dir
        members[info.filename] = _Member(info, info.header_offset if shared else following[info.header_offset])
    return members


def _check_member(path, member, nbytes, what="storage record"):
    if member.file_size < nbytes:
        raise ValueError(f"{path}: {what} {member.name!r} holds {member.file_size} bytes, needs {nbytes}")
    if member.flags & 0x1:
        raise ValueError(f"{path}: zip member {member.name!r} is encrypted")
    if member.method == zipfile.ZIP_STORED:
        if member.compress_size < member.file_size:
            raise ValueError(f"{path}: stored zip member {member.name!r} is shorter than its declared size")
    elif member.method == zipfile.ZIP_DEFLATED:
        if member.file_size > _MAX_DEFLATE_RATIO * member.compress_size:
            raise ValueError(
                f"{path}: zip member {member.name!r} declares {member.file_size} bytes from "
                f"{member.compress_size} compressed (more than deflate's {_MAX_DEFLATE_RATIO}:1); refusing a zip bomb"
            )
    else:
        raise ValueError(
            f"{path}: zip member {member.name!r} uses compression method {member.method}; only stored and "
            "deflated members are supported"
        )


def _read_member(file, member, start, stop, mmap):
    """Bytes ``[start, stop)`` of a member's uncompressed data as a uint8 array, reading (and
    inflating) nothing past ``stop``; the member must pass ``_check_member`` for ``stop`` bytes."""
    path = file.path
    _check_member(path, member, stop)
    if stop == start:
        return np.zeros(0, dtype=np.uint8)
    if not 0 <= member.header_offset < member.end_offset:
        raise ValueError(f"{path}: zip member {member.name!r} overlaps another member or lies outside the archive")
    handle = file.handle
    handle.seek(member.header_offset)
    local = handle.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: bad local zip header for {member.name!r}")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    if handle.read(name_length) != member.raw_name:
        raise ValueError(f"{path}: local zip header of {member.name!r} names another file")
    data_start = member.header_offset + 30 + name_length + extra_length
    if data_start + member.compress_size > min(member.end_offset, file.size()):
        raise ValueError(f"{path}: zip member {member.name!r} overlaps another member or runs past the end of the file")
    what = f"zip member {member.name!r}"
    if member.method == zipfile.ZIP_STORED:
        if mmap:
            return file.map(data_start + start, stop - start, what)
        data = file.read(data_start + start, stop - start, what)
    else:
        data = np.frombuffer(_inflate(path, member, handle, data_start, stop), dtype=np.uint8)[start:]
    if start == 0 and stop == member.file_size and zlib.crc32(data) != member.crc:
        raise ValueError(f"{path}: zip member {member.name!r} fails its CRC check (corrupt)")
    return data


def _inflate(path, member, handle, data_start, stop):
    """The first ``stop`` bytes of a deflated member, reading compressed input in chunks."""
    decompressor, out = zlib.decompressobj(-zlib.MAX_WBITS), bytearray()
    handle.seek(data_start)
    left = member.compress_size
    pending = b""
    try:
        while len(out) < stop and not decompressor.eof:
            if not pending:
                if left == 0:
                    break
                pending = handle.read(min(_READ_CHUNK, left))
                if not pending:
                    break
                left -= len(pending)
            out += decompressor.decompress(pending, stop - len(out))
            pending = decompressor.unconsumed_tail
    except zlib.error as exc:
        raise ValueError(f"{path}: zip member {member.name!r} is corrupt ({exc})") from None
    if len(out) < stop:
        raise ValueError(f"{path}: zip member {member.name!r} inflates to fewer bytes than it declares")
    return out


class _ZipStorages:
    """Storages of a torch zip: member ``<prefix>data/<key>`` each."""

    def __init__(self, file, members, prefix):
        self.file, self.path, self.members, self.prefix = file, file.path, members, prefix

    def _member(self, key):
        member = self.members.get(f"{self.prefix}data/{key}")
        if member is None:
            raise ValueError(f"{self.path}: storage record {self.prefix}data/{key!r} is missing")
        return member

    def check(self, storage):
        _check_member(self.path, self._member(storage.key), storage.numel * storage.etype.dtype.itemsize)

    def read(self, key, start, stop, mmap):
        return _read_member(self.file, self._member(key), start, stop, mmap)


def _open_zip(file, mmap, bf16_as_float32):
    path = file.path
    members = _zip_members(path, file.handle)
    pickles = [n for n in members if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        found = "no" if not pickles else f"{len(pickles)}"
        raise ValueError(f"{path}: zip archive has {found} '<folder>/data.pkl' record; not a torch.save file")
    prefix = pickles[0][: -len("data.pkl")]
    pkl = members[pickles[0]]
    if pkl.file_size > _MAX_PICKLE_BYTES:
        raise ValueError(f"{path}: {pickles[0]} is {pkl.file_size} bytes; too large for a checkpoint pickle")
    data = _read_member(file, pkl, 0, pkl.file_size, mmap=False).tobytes()
    byteorder = "little"
    if prefix + "byteorder" in members:
        record = members[prefix + "byteorder"]
        if record.file_size > _MAX_BYTEORDER_BYTES:
            raise ValueError(f"{path}: byteorder record is {record.file_size} bytes; expected 'little' or 'big'")
        raw = _read_member(file, record, 0, record.file_size, mmap=False).tobytes()
        byteorder = raw.decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")
    storages = {}
    obj = _unpickle(path, pickles[0], data, _storage_persistent_load(path, storages, legacy=False))
    return _Checkpoint(file, _ZipStorages(file, members, prefix), byteorder == "big", mmap, bf16_as_float32), obj


# --- the legacy stream ---------------------------------------------------------------------------


def _storage_persistent_load(path, storages, legacy):
    """persistent_load for torch's ``("storage", type, key, location, numel[, view])`` ids."""

    def load(pid):
        if not isinstance(pid, tuple) or len(pid) != (6 if legacy else 5) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id (a {type(pid).__name__}, not a torch storage id)")
        _, etype, key, _location, numel = pid[:5]
        if (not isinstance(etype, _ElementType) or not isinstance(key, str) or type(numel) is not int
                or not 0 <= numel <= _MAX_ELEMENTS):  # fmt: skip
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


class _LegacyStorages:
    """Storages of a legacy stream: ``key -> (file offset, bytes)`` from the record headers."""

    def __init__(self, file, spans):
        self.file, self.path, self.spans = file, file.path, spans

    def check(self, storage):
        if storage.key not in self.spans:
            raise ValueError(f"{self.path}: storage {storage.key!r} has no data record")
        available, needed = self.spans[storage.key][1], storage.numel * storage.etype.dtype.itemsize
        if available < needed:
            raise ValueError(f"{self.path}: storage {storage.key!r} holds {available} bytes, needs {needed}")

    def read(self, key, start, stop, mmap):
        if stop == start:
            return np.zeros(0, dtype=np.uint8)
        offset, what = self.spans[key][0] + start, f"storage {key!r} record"
        return self.file.map(offset, stop - start, what) if mmap else self.file.read(offset, stop - start, what)


def _next_pickle(path, what, handle):
    """Read the pickle starting at the handle's position (scanned, bounded) and return its bytes."""
    start = handle.tell()
    with _pickle_errors(path, what):
        length = _scan_pickle(path, what, _BoundedReader(handle, _MAX_PICKLE_BYTES)) - start
    handle.seek(start)
    return handle.read(length)


def _open_legacy(file, mmap, bf16_as_float32):
    path, handle = file.path, file.handle
    magic = _unpickle(path, "the magic number", _next_pickle(path, "the magic number", handle))
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)")
    protocol = _unpickle(path, "the protocol version", _next_pickle(path, "the protocol version", handle))
    if type(protocol) is not int or protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unsupported legacy checkpoint protocol")
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
    return _Checkpoint(file, _LegacyStorages(file, spans), False, mmap, bf16_as_float32), obj


# --- opening any torch.save file -------------------------------------------------------------------


def _guarded(path, function, *args):
    """Run ``function``; anything but ValueError/OSError becomes a ValueError naming the file."""
    try:
        return function(*args)
    except (ValueError, OSError):
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, struct.error, MemoryError...
        raise ValueError(f"{path}: corrupt PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def _open(path, mmap, bf16_as_float32):
    """Parse the container and unpickle its structure: ``(_Checkpoint, object)``; no tensor read."""
    file = _File(path)
    try:
        head = file.handle.read(4)
        file.handle.seek(0)
        if head[:2] == b"PK":  # a local file header, or the end record of an empty zip
            return _open_zip(file, mmap, bf16_as_float32)
        if _is_tar(file.handle):
            raise ValueError(
                f"{path}: PyTorch < 0.4 tar checkpoints are not supported; re-save it with a recent "
                "PyTorch (torch.save(torch.load(f), f))"
            )
        return _open_legacy(file, mmap, bf16_as_float32)
    except BaseException:
        file.close()
        raise


def _is_tar(handle):
    try:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            archive.next()
        return True
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return False
    finally:
        handle.seek(0)


def _read_record(path, checkpoint, layout):
    return _guarded(path, checkpoint.read, layout)


def _plan(path, mmap, bf16_as_float32):
    """``(_Checkpoint, {name: (tensor, layout)})`` of a state dict, every tensor checked; none read."""
    checkpoint, obj = _open(path, mmap, bf16_as_float32)
    try:
        return checkpoint, {name: (ref, checkpoint.layout(ref)) for name, ref in _state_dict(path, obj).items()}
    except BaseException:
        checkpoint.file.close()
        raise


def plan_torch_bin(path, *, mmap=True):
    """Describe every tensor of a PyTorch state dict from its pickle alone; read none of them.

    The container and the pickle are parsed and every tensor is checked against its storage
    (bounds, size, zip member sizes) before anything is returned, so a record whose ``read()``
    is called reads only that tensor's bytes, at most ``record.nbytes`` (inflating a compressed
    member only up to the end of the tensor).

    Args:
        path: str or os.PathLike. A ``torch.save`` file, zip or legacy format (see
            :func:`read_torch_bin`).
        mmap: bool. Each ``read()`` memory-maps its bytes copy-on-write when the storage is
            uncompressed; else reads them. Defaults to ``True``.

    Returns:
        dict[str, TensorRecord]. In the state dict's order; ``dtype`` is the stored numpy dtype
        (native byte order) or ``"bfloat16"``, ``nbytes`` the bytes ``read()`` takes from the
        file, ``read()`` returns a numpy array (bfloat16 widened to float32, native byte order).

    Raises:
        UnsafeCheckpointError: the pickle references a global outside the allow-list.
        ValueError: not a PyTorch checkpoint, truncated, corrupt, or over a cap (the message
            names the file and the problem); ``read()`` raises the same when the file changed.
        OSError: the file cannot be opened or read.

    Example:

    >>> plan = plan_torch_bin("tests/fixtures/formats/torch_pickle/state_zip.bin")  # doctest: +SKIP
    >>> plan["encoder.weight"].shape, plan["encoder.weight"].nbytes  # doctest: +SKIP
    ((4, 3), 48)
    >>> plan["encoder.weight"].read().dtype  # doctest: +SKIP
    dtype('float32')
    """
    path = os.fspath(path)
    checkpoint, planned = _guarded(path, _plan, path, mmap, True)
    return {
        name: TensorRecord(
            name=name,
            dtype="bfloat16" if layout.is_bfloat16 else layout.dtype.newbyteorder("="),
            shape=layout.shape,
            nbytes=layout.stop - layout.start,
            read=functools.partial(_read_record, path, checkpoint, layout),
            source=path,
        )
        for name, (ref, layout) in planned.items()
    }


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
        ValueError: the file is not a PyTorch checkpoint, is truncated or corrupt, nests objects
            more than 64 deep or exceeds another cap (see the module docstring).
        OSError: the file cannot be opened or read.

    Example:

    >>> load_torch_pickle("training_checkpoint.bin")["step"]  # doctest: +SKIP
    3
    """
    path = os.fspath(path)

    def load():
        checkpoint, obj = _open(path, mmap, bf16_as_float32)
        try:
            return _convert_tree(checkpoint, obj)
        finally:
            checkpoint.file.close()

    return _guarded(path, load)


def read_torch_bin(path, *, mmap=True, bf16_as_float32=True):
    """Read a PyTorch state dict (``pytorch_model.bin``) as ``name -> numpy array``.

    Never imports torch and never executes code from the file (see the module docstring).
    To read only some tensors, use :func:`plan_torch_bin`.

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
        ValueError: not a PyTorch checkpoint, truncated or corrupt, over a cap, or not a flat
            mapping of string names to tensors (the message names the file and the problem).
        OSError: the file cannot be opened or read.

    Example:

    >>> state = read_torch_bin("tests/fixtures/formats/torch_pickle/state_zip.bin")  # doctest: +SKIP
    >>> state["encoder.weight"].shape  # doctest: +SKIP
    (4, 3)
    """
    path = os.fspath(path)

    def read():
        checkpoint, planned = _plan(path, mmap, bf16_as_float32)
        try:
            return checkpoint.read_all({name: layout for name, (_, layout) in planned.items()})
        finally:
            checkpoint.file.close()

    return _guarded(path, read)
