"""Read the ``tf_model.h5`` files written by the TensorFlow classes of transformers < 5.

Those files come from Keras 2 ``Model.save_weights`` (h5 layout): the root attribute
``layer_names`` lists the top-level layers (for ``TFHubertForCTC``: ``hubert``, a weightless
``dropout*`` and ``lm_head``); each layer's group has the attribute ``weight_names`` listing
the full variable names, and each variable is the dataset at ``<layer_name>/<weight_name>``,
e.g.::

    /hubert/tf_hubert_for_ctc/hubert/encoder/layers.0/attention/q_proj/kernel:0

A file written by ``Model.save`` (weights under ``model_weights/``) is read the same way.

Reading is planned (:func:`plan_legacy_tf_h5`): every listed dataset is checked from its metadata
before any of its data is read, and refused (``ValueError`` naming the file and the dataset) when
HDF5 would read bytes from anywhere but this file or more bytes than the file holds:

* soft links and external links on the way to it (an external link opens another file);
* external storage (raw data in other files: ``/etc/passwd``, a FIFO that blocks forever);
* virtual datasets (their data lives in other files);
* filters other than gzip, shuffle, fletcher32 and lzf (plugins are code from elsewhere);
* chunked datasets with unwritten chunks and contiguous ones with unallocated storage (read as
  the fill value: a ~150 KiB file could otherwise declare a 2 GiB tensor), and non-numeric dtypes.

The file is opened once by us and handed to h5py as a Python file object, so the HDF5 library
never opens any path itself.

libhdf5 itself is not safe on hostile metadata: a byte-mutated file can make it loop forever (e.g. a
global-heap object with index 0 and size 0, which ``H5HG__cache_heap_deserialize`` never steps past,
reached by reading a ``weight_names`` attribute), crash or allocate without bound while parsing object
headers. So the whole metadata walk (everything :func:`plan_legacy_tf_h5` does before a record is read:
attributes, groups, links, dataset dtypes, shapes, filters, chunk counts) first runs in a child
process (``python -c``, importing only numpy and h5py, no TensorFlow) with a wall-clock, CPU and
address-space limit (:data:`METADATA_SECONDS`, :data:`METADATA_MEMORY_BYTES`). Only a file whose walk
finished there is walked again in this process (the same headers parse the same way); a child that
ran out of time or died means ``ValueError: <file>: HDF5 metadata could not be parsed within N s:
corrupt file``. The walk can also be run by hand: ``python -m hubert_tf.checkpoints.formats.legacy_h5
--validate PATH``.
"""

import math
import os
import signal
import subprocess
import sys

import numpy as np

from hubert_tf.checkpoints.formats.records import TensorRecord

__all__ = ["METADATA_MEMORY_BYTES", "METADATA_SECONDS", "plan_legacy_tf_h5", "read_legacy_tf_h5"]

# Limits of the child process that walks the HDF5 metadata first (see the module docstring). The
# child costs ~0.2 s per file on a loaded 2-core machine, mostly importing numpy; a 500-dataset walk
# adds ~0.1 s (a HuBERT-large file has a few hundred). Both are read at call time: tests lower them.
METADATA_SECONDS = 30.0  # wall clock, and (rounded up) CPU seconds of the child
METADATA_MEMORY_BYTES = 1 << 30  # address space the walk may add to the child's after its imports

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The filters h5py itself ships (no plugin code): gzip/deflate, shuffle, fletcher32, lzf.
_STANDARD_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
_NUMERIC_KINDS = "fiucb"  # refusing complex / bool weights is the loader's job (it names the key)


def _has_hdf5_signature(f):
    # HDF5 puts its superblock at byte 0 or, after a user block, at 512, 1024, 2048, ...
    size = os.fstat(f.fileno()).st_size
    offset = 0
    while offset + len(_HDF5_SIGNATURE) <= size:
        f.seek(offset)
        if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _strings(values):
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def _names_attribute(path, group, attribute):
    """Read a Keras name-list attribute; very long lists are chunked as ``name0``, ``name1``..."""
    if attribute in group.attrs:
        return _strings(group.attrs[attribute])
    if f"{attribute}0" in group.attrs:
        names, chunk = [], 0
        while f"{attribute}{chunk}" in group.attrs:
            names.extend(_strings(group.attrs[f"{attribute}{chunk}"]))
            chunk += 1
        return names
    where = group.name if group.name != "/" else "the root group"
    raise ValueError(f"{path}: {where} has no {attribute!r} attribute; not a Keras h5 weights file")


def _hard_link_target(path, group, name, what):
    """``group[name]`` reached through hard links only (each path component checked), or ValueError."""
    import h5py

    node = group
    for part in [p for p in name.split("/") if p]:
        if not isinstance(node, h5py.Group) or part not in node:
            return None
        link = node.get(part, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise ValueError(f"{path}: {what} {name!r} goes through an external link to "
                             f"{link.filename}:{link.path}; refusing to open another file")
        if isinstance(link, h5py.SoftLink):
            raise ValueError(f"{path}: {what} {name!r} goes through a soft link to {link.path}; refusing")
        node = node[part]
    return node


def _check_dataset(path, name, dataset):
    """Refuse datasets whose data is not simply inside this file (see the module docstring)."""
    import h5py

    where = f"{path}: dataset {dataset.name!r}"
    dtype = dataset.dtype
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"{where} has dtype {dtype}, not a numeric weight")
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise ValueError(f"{where} is a virtual dataset (data in other files); refusing")
    if plist.get_external_count() > 0:
        name0 = plist.get_external(0)[0].decode("utf-8", "replace")
        raise ValueError(f"{where} keeps its data in external file {name0!r}; refusing to read other files")
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in _STANDARD_FILTERS:
            raise ValueError(f"{where} uses HDF5 filter {code}, not one of gzip/shuffle/fletcher32/lzf")
    shape = tuple(int(d) for d in dataset.shape) if dataset.shape is not None else None
    if shape is None:
        raise ValueError(f"{where} has no data (null dataspace)")
    size = math.prod(shape)
    if size and layout == h5py.h5d.CHUNKED:
        chunk = plist.get_chunk()
        needed = math.prod(-(-d // c) for d, c in zip(shape, chunk))
        written = dataset.id.get_num_chunks()
        if written < needed:
            raise ValueError(f"{where} (shape {list(shape)}) has {written} of its {needed} chunks written; "
                             "refusing to read fill values")
    elif size and layout == h5py.h5d.CONTIGUOUS and dataset.id.get_storage_size() < size * dtype.itemsize:
        raise ValueError(f"{where} (shape {list(shape)}) has {dataset.id.get_storage_size()} bytes stored "
                         f"of the {size * dtype.itemsize} it declares")
    return shape, np.dtype(dtype).newbyteorder("="), size * dtype.itemsize


def _reader(path, source, dataset, shape):
    def read():
        try:
            value = np.asarray(dataset[()])
        except Exception as exc:  # h5py reports damaged data as OSError, RuntimeError...
            raise ValueError(f"{path}: could not read dataset {dataset.name!r} ({type(exc).__name__}: {exc})") from None
        if value.shape != shape:
            raise ValueError(f"{path}: dataset {dataset.name!r} read as {value.shape}, planned {shape}")
        return value

    read.source = source  # keeps the open file alive as long as a record is
    return read


def plan_legacy_tf_h5(path):
    """Plan a legacy transformers TensorFlow ``tf_model.h5``: every weight as a :class:`TensorRecord`.

    Every dataset is checked (links, storage, filters, written chunks, dtype; see the module docstring)
    before anything is read; a record's ``read()`` then reads that one dataset from the already open file.
    The walk runs first in a time- and memory-limited child process, so a file on which libhdf5 would
    spin or crash is refused instead (``ValueError``, within :data:`METADATA_SECONDS`).

    Args:
        path: str or os.PathLike. The ``.h5`` file (Keras 2 ``save_weights`` layout).

    Returns:
        dict[str, TensorRecord]. Keyed like :func:`read_legacy_tf_h5`, in file order.

    Raises:
        OSError: the file cannot be opened.
        ValueError: the file is not HDF5, is corrupt, is not in the Keras layout, a dataset would
            read from elsewhere (the message names the file and the dataset), or its metadata could
            not be parsed within the limits.

    Example:

    >>> records = plan_legacy_tf_h5("tests/fixtures/formats/legacy_h5/tf_model.h5")  # doctest: +SKIP
    >>> records["tf_hubert_for_ctc/lm_head/kernel:0"].shape  # doctest: +SKIP
    (32, 12)
    """
    path = os.fspath(path)
    handle = open(path, "rb")  # also raises OSError for a missing file
    try:
        if not _has_hdf5_signature(handle):
            raise ValueError(f"{path}: not an HDF5 file (no HDF5 signature)")
        _walk_in_child(path, os.fstat(handle.fileno()))
    except BaseException:
        handle.close()
        raise
    return _walk(path, handle)


def _walk(path, handle):
    """The metadata walk: open ``handle`` (an HDF5 file) with h5py, check every listed dataset and
    plan it. Closes ``handle`` on error; on success the records keep it open."""
    import h5py  # a project dependency, but only this reader needs it

    f = None

    def close():
        if f is not None:
            f.close()
        handle.close()

    try:
        handle.seek(0)
        f = h5py.File(handle, "r")
        root = f
        if "layer_names" not in f.attrs and "model_weights" in f:
            root = _hard_link_target(path, f, "model_weights", "group")  # written by Model.save
        records = {}
        for layer_name in _names_attribute(path, root, "layer_names"):
            layer = _hard_link_target(path, root, layer_name, "layer")
            if layer is None:
                raise ValueError(f"{path}: layer {layer_name!r} is listed but has no group")
            if not isinstance(layer, h5py.Group):
                raise ValueError(f"{path}: layer {layer_name!r} is not a group")
            for weight_name in _names_attribute(path, layer, "weight_names"):
                dataset = _hard_link_target(path, layer, weight_name, "weight")
                if not isinstance(dataset, h5py.Dataset):
                    raise ValueError(f"{path}: weight {layer_name}/{weight_name} is listed but missing")
                if weight_name in records:
                    raise ValueError(f"{path}: weight {weight_name!r} appears in two layers")
                shape, dtype, nbytes = _check_dataset(path, weight_name, dataset)
                records[weight_name] = TensorRecord(
                    name=weight_name, dtype=dtype, shape=shape, nbytes=nbytes, source=path,
                    read=_reader(path, (handle, f), dataset, shape),
                )
        return records
    except ValueError as exc:
        close()
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path}: corrupt or truncated HDF5 file ({exc})") from None
    except Exception as exc:  # h5py reports damaged files as OSError, KeyError, RuntimeError...
        close()
        raise ValueError(f"{path}: corrupt or truncated HDF5 file ({type(exc).__name__}: {exc})") from None


# --- the metadata walk in a limited child process ----------------------------------------------

# The child imports this module by name (so it must find the same hubert_tf as this process) and
# nothing else of the package's heavy parts: numpy and h5py only, no TensorFlow.
_CHILD_CODE = ("import sys; from hubert_tf.checkpoints.formats.legacy_h5 import _main; "
               "sys.exit(_main(sys.argv[1:]))")  # fmt: skip
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _timeout_error(path, seconds):
    return ValueError(f"{path}: HDF5 metadata could not be parsed within {seconds:g} s: corrupt file")


def _walk_in_child(path, stat):
    """Run :func:`_walk` on ``path`` in a child process under the module's limits; return if it
    finished cleanly on the same file as ``stat`` describes, raise ValueError otherwise."""
    seconds = float(METADATA_SECONDS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONSAFEPATH"] = "1"  # Python >= 3.11: no current directory on the child's sys.path
    command = [sys.executable, "-c", _CHILD_CODE, "--validate", path, "--seconds", repr(seconds),
               "--memory", str(int(METADATA_MEMORY_BYTES)), "--parent", str(os.getpid())]  # fmt: skip
    try:
        # No preexec_fn (unsafe once TensorFlow runs threads): the child sets its own limits.
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=seconds,
                              check=False)  # every exit status is mapped below
    except subprocess.TimeoutExpired:  # run() has killed (SIGKILL) and reaped the child
        raise _timeout_error(path, seconds) from None
    except OSError as exc:  # no usable sys.executable (an embedded interpreter), no processes left...
        raise OSError(f"{path}: could not start a process to check the HDF5 metadata ({exc})") from None
    out = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode == 0:
        if out.split() != ["ok", str(stat.st_dev), str(stat.st_ino)]:
            raise ValueError(f"{path}: the file was replaced while its HDF5 metadata was checked; refusing")
        return
    if done.returncode == 1 and out.startswith(path):
        raise ValueError(out)  # the walk's own error (names the file and the dataset)
    if done.returncode < 0:
        number = -done.returncode
        if number in (getattr(signal, "SIGXCPU", None), signal.SIGKILL):  # the CPU limit: SIGXCPU, then SIGKILL
            raise _timeout_error(path, seconds)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        raise ValueError(f"{path}: HDF5 metadata could not be parsed (the HDF5 library died of {name}): corrupt file")
    tail = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [out or "no output"])[-1]
    raise OSError(f"{path}: could not check the HDF5 metadata in a child process (exit status "
                  f"{done.returncode}: {tail})")  # fmt: skip


def _die_with_parent(parent):
    """Linux: be killed when the parent goes (a killed loader must not leave a spinning child)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the CPU limit still ends the child
        return
    if os.getppid() != parent:  # the parent went before prctl took effect
        os._exit(3)


def _limit(seconds, memory_bytes):
    """Cap this process's CPU time (``seconds`` more than used so far) and address space."""
    try:
        import resource
    except ImportError:  # not POSIX: the parent's wall clock is the only limit
        return

    def cap(kind, soft, hard):
        _, old_hard = resource.getrlimit(kind)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(kind, (soft, hard))

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    cap(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU, then SIGKILL
    cap(resource.RLIMIT_CORE, 0, 0)  # a crash in libhdf5 leaves no core file behind
    try:  # the address-space cap is relative to what the imports mapped (Linux; elsewhere none)
        with open("/proc/self/status") as f:
            size = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")), None)
    except OSError:
        size = None
    if size is not None:
        cap(resource.RLIMIT_AS, size + memory_bytes, size + memory_bytes)


def _main(argv=None):
    """``python -m hubert_tf.checkpoints.formats.legacy_h5 --validate PATH``: walk the metadata.

    Prints ``ok <st_dev> <st_ino>`` and exits 0 when the walk finished, prints the ValueError/OSError
    and exits 1 when it refused the file; dies of SIGXCPU past ``--seconds`` of CPU.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hubert_tf.checkpoints.formats.legacy_h5",
                                     description="Check the HDF5 metadata of a legacy tf_model.h5.")  # fmt: skip
    parser.add_argument("--validate", metavar="PATH", required=True, help="the .h5 file")
    parser.add_argument("--seconds", type=float, default=METADATA_SECONDS, help="CPU seconds allowed")
    parser.add_argument("--memory", type=int, default=METADATA_MEMORY_BYTES, help="address space allowed, bytes")
    parser.add_argument("--parent", type=int, default=None, help="die with this process (Linux)")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with_parent(args.parent)
    import h5py  # noqa: F401 - imported before the limits: its import is not the file's cost

    _limit(args.seconds, args.memory)
    path, code = args.validate, 0
    try:
        with open(path, "rb") as handle:  # the records keep h5py's file open; os._exit drops both
            stat = os.fstat(handle.fileno())
            if not _has_hdf5_signature(handle):
                raise ValueError(f"{path}: not an HDF5 file (no HDF5 signature)")
            _walk(path, handle)
        message = f"ok {stat.st_dev} {stat.st_ino}"
    except (ValueError, OSError) as exc:
        message, code = str(exc), 1
    sys.stdout.write(message + "\n")
    sys.stdout.flush()
    os._exit(code)  # skip libhdf5's teardown: nothing of a hostile file gets a second chance to spin


def read_legacy_tf_h5(path):
    """Read every weight of a legacy transformers TensorFlow ``tf_model.h5`` (checked as in
    :func:`plan_legacy_tf_h5`).

    Args:
        path: str or os.PathLike. The ``.h5`` file (Keras 2 ``save_weights`` layout).

    Returns:
        dict[str, np.ndarray]. Keyed by the **full weight name exactly as listed in each
        layer's ``weight_names`` attribute**, i.e. the dataset path *without* the leading
        layer-group name, still with the model scope and the ``:0`` suffix, e.g.
        ``"tf_hubert_for_ctc/hubert/encoder/layers.0/attention/q_proj/kernel:0"`` (the
        dataset is ``/hubert/<that name>``). Ordered by layer, then as listed. Values are in
        memory (not mapped) with the dtype stored in the file. transformers itself drops
        the first component (``tf_hubert_for_ctc/``, the model's name scope) when matching.

    Raises:
        OSError: the file cannot be opened (missing, unreadable).
        ValueError: the file is not HDF5, is truncated or corrupt, is not in the Keras h5
            weights layout, or a dataset would read from elsewhere (the message names the file).

    Example:

    >>> weights = read_legacy_tf_h5("tests/fixtures/formats/legacy_h5/tf_model.h5")  # doctest: +SKIP
    >>> weights["tf_hubert_for_ctc/lm_head/kernel:0"].shape  # doctest: +SKIP
    (32, 12)
    """
    return {name: record.read() for name, record in plan_legacy_tf_h5(path).items()}


if __name__ == "__main__":
    sys.exit(_main())
