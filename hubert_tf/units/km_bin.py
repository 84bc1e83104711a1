"""Published k-means unit vocabularies (`km.bin`: a scikit-learn `MiniBatchKMeans` saved by joblib, as
fairseq's `learn_kmeans.py` writes it) read without scikit-learn, joblib, or running any code from the
file.

A pickle can call any importable function. This reader is a pure-Python unpickler whose `find_class`
resolves only stand-ins: the estimator classes become a plain attribute holder, joblib's
`NumpyArrayWrapper` an array read from the raw bytes that follow it (numeric dtypes only), `numpy.dtype`
the real constructor (it only parses a type string), `numpy.ndarray` a marker and numpy's `_reconstruct`
an array built from its raw bytes (plain pickles). Any other global
raises `UnsafeCheckpointError` naming it; nothing is imported or called on the file's behalf.
"""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np

from ..checkpoints.formats.torch_pickle import UnsafeCheckpointError
from .kmeans import KMeans

MAX_KM_BIN_BYTES = 1 << 30  # 1 GiB: a 2000 x 1024 float32 codebook is 8 MB
_ESTIMATORS = {("sklearn.cluster._kmeans", "MiniBatchKMeans"), ("sklearn.cluster._kmeans", "KMeans"),
               ("sklearn.cluster.k_means_", "MiniBatchKMeans"), ("sklearn.cluster.k_means_", "KMeans")}


class _Estimator:
    """Stand-in for a scikit-learn estimator: holds the pickled attributes, runs nothing."""

    sklearn_class = None

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("estimator state is not a dict")
        self.__dict__.update(state)


class _ArrayWrapper:
    """Stand-in for joblib's NumpyArrayWrapper: its state describes the array stored right after it."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("NumpyArrayWrapper state is not a dict")
        self.__dict__.update(state)


class _NdarrayMarker:
    """numpy.ndarray as named in a wrapper's `subclass` field; never instantiated."""


class _PlainArray:
    """An ndarray of a plain pickle (`numpy._core.multiarray._reconstruct` + its state tuple), built
    from the raw bytes of the state; numeric dtypes only."""

    array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[1], tuple)
                and isinstance(state[2], np.dtype) and not state[2].hasobject and isinstance(state[4], bytes)):
            raise pickle.UnpicklingError("unsupported pickled ndarray (object dtype or bad state)")
        _, shape, dtype, fortran, raw = state
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != len(raw):
            raise pickle.UnpicklingError(f"ndarray of shape {shape} does not match its {len(raw)} bytes")
        array = np.frombuffer(raw, dtype, count).copy()
        self.array = array.reshape(shape[::-1]).T.copy() if fortran else array.reshape(shape)


def _reconstruct(cls, shape, typecode):
    if cls is not _NdarrayMarker:
        raise pickle.UnpicklingError("refusing to reconstruct an ndarray subclass")
    return _PlainArray()


def _dtype(*args):
    if not args or not isinstance(args[0], str) or not all(isinstance(a, bool) for a in args[1:]):
        raise pickle.UnpicklingError(f"unsupported numpy.dtype arguments {args!r}")
    return np.dtype(args[0])


class _KmBinUnpickler(pickle._Unpickler):  # the Python implementation: its BUILD can be extended
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, path):
        super().__init__(file)
        self._file, self._path = file, path

    def find_class(self, module, name):
        if (module, name) in _ESTIMATORS:
            return type(name, (_Estimator,), {"sklearn_class": f"{module}.{name}"})
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _ArrayWrapper
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name == "dtype":
            return _dtype
        if module == "numpy" and name == "ndarray":
            return _NdarrayMarker
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _reconstruct
        raise UnsafeCheckpointError(f"{self._path}: refusing to load global '{module}.{name}'")

    def load_build(self):
        super().load_build()
        wrapper = self.stack[-1]
        if isinstance(wrapper, _ArrayWrapper):
            self.stack[-1] = self._read_array(wrapper)
        elif isinstance(wrapper, _PlainArray):
            self.stack[-1] = wrapper.array

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, wrapper):
        # joblib >= 1.2 (uncompressed files): one byte of padding length, the padding, then the data in
        # `order`, so that memory-mapping finds it aligned.
        shape, dtype, order = getattr(wrapper, "shape", None), getattr(wrapper, "dtype", None), getattr(wrapper, "order", "C")
        if (not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape)
                or not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F")
                or getattr(wrapper, "subclass", _NdarrayMarker) is not _NdarrayMarker):
            raise pickle.UnpicklingError("unsupported joblib array (object dtype, subclass or bad shape)")
        if getattr(wrapper, "numpy_array_alignment_bytes", None) is not None:
            padding = self._file.read(1)
            if len(padding) != 1:
                raise pickle.UnpicklingError("truncated array padding")
            self._file.read(padding[0])
        count = int(np.prod(shape, dtype=np.int64))
        size = count * dtype.itemsize
        if size > MAX_KM_BIN_BYTES:
            raise pickle.UnpicklingError(f"array of {size} bytes is larger than the {MAX_KM_BIN_BYTES} byte limit")
        data = self._file.read(size)
        if len(data) != size:
            raise pickle.UnpicklingError(f"truncated array: {len(data)} of {size} bytes")
        array = np.frombuffer(data, dtype, count).copy()
        return array.reshape(shape[::-1]).T.copy() if order == "F" else array.reshape(shape)


def read_km_bin(path) -> KMeans:
    """Reads a scikit-learn k-means `km.bin` (joblib or plain pickle of `MiniBatchKMeans` / `KMeans`) as a
    `hubert_tf.units.KMeans` with the same `cluster_centers_` (float32) and the same `predict`.

    Args:
        path: the file, e.g. fairseq's `hubert_base_ls960_L9_km500.bin`.

    Returns:
        A fitted KMeans; its metadata records the scikit-learn class and version.

    Raises:
        UnsafeCheckpointError (a ValueError): the pickle names any other global (nothing is run).
        ValueError: not a k-means pickle, compressed joblib files, a truncated file or bad centres,
            naming the file.

    Example:

    >>> km = read_km_bin("hubert_base_ls960_L9_km500.bin")   # doctest: +SKIP
    >>> km.n_clusters, km.dim                                  # doctest: +SKIP
    (500, 768)
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > MAX_KM_BIN_BYTES:
        raise ValueError(f"{path}: {size} bytes is larger than the {MAX_KM_BIN_BYTES} byte limit of km.bin files")
    with open(path, "rb") as f:
        head = f.read(2)
        if head[:1] != b"\x80":  # zlib/gzip/xz/lz4-compressed joblib files start otherwise
            raise ValueError(f"{path}: not an uncompressed pickle (compressed joblib files are not supported)")
        f.seek(0)
        data = io.BytesIO(f.read())
    try:
        estimator = _KmBinUnpickler(data, path).load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error) as error:
        raise ValueError(f"{path}: not a readable scikit-learn k-means pickle ({error})") from None
    if not isinstance(estimator, _Estimator):
        raise ValueError(f"{path}: the pickle holds a {type(estimator).__name__}, not a scikit-learn k-means")
    centers = getattr(estimator, "cluster_centers_", None)
    if not isinstance(centers, np.ndarray) or centers.ndim != 2 or centers.dtype.kind != "f" or centers.shape[0] < 1:
        raise ValueError(f"{path}: cluster_centers_ must be a float array [n_clusters, dim], got "
                         f"{getattr(centers, 'shape', type(centers).__name__)}")
    if not np.isfinite(centers).all():
        raise ValueError(f"{path}: cluster_centers_ contain NaN or infinity")
    metadata = {"source": "scikit-learn", "class": estimator.sklearn_class,
                "sklearn_version": str(getattr(estimator, "_sklearn_version", "unknown"))}
    km = KMeans(centers.shape[0], seed=0, metadata=metadata)
    km.centroids = centers.astype(np.float32)
    inertia = getattr(estimator, "inertia_", None)
    km.inertia = float(inertia) if isinstance(inertia, (int, float)) else None
    return km

