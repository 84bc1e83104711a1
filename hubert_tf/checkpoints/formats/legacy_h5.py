"""Read the ``tf_model.h5`` files written by the TensorFlow classes of transformers < 5.

Those files come from Keras 2 ``Model.save_weights`` (h5 layout): the root attribute
``layer_names`` lists the top-level layers (for ``TFHubertForCTC``: ``hubert``, a weightless
``dropout*`` and ``lm_head``); each layer's group has the attribute ``weight_names`` listing
the full variable names, and each variable is the dataset at ``<layer_name>/<weight_name>``,
e.g.::

    /hubert/tf_hubert_for_ctc/hubert/encoder/layers.0/attention/q_proj/kernel:0

A file written by ``Model.save`` (weights under ``model_weights/``) is read the same way.
"""

import os

import numpy as np

__all__ = ["read_legacy_tf_h5"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path):
    # HDF5 puts its superblock at byte 0 or, after a user block, at 512, 1024, 2048, ...
    with open(path, "rb") as f:
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


def read_legacy_tf_h5(path):
    """Read every weight of a legacy transformers TensorFlow ``tf_model.h5``.

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
        ValueError: the file is not HDF5, is truncated or corrupt, or is not in the Keras h5
            weights layout (the message names the file and the problem).

    Example:

    >>> weights = read_legacy_tf_h5("tests/fixtures/formats/legacy_h5/tf_model.h5")  # doctest: +SKIP
    >>> weights["tf_hubert_for_ctc/lm_head/kernel:0"].shape  # doctest: +SKIP
    (32, 12)
    """
    import h5py  # a project dependency, but only this reader needs it

    path = os.fspath(path)
    if not _has_hdf5_signature(path):  # also raises OSError for a missing file
        raise ValueError(f"{path}: not an HDF5 file (no HDF5 signature)")
    try:
        with h5py.File(path, "r") as f:
            root = f
            if "layer_names" not in f.attrs and "model_weights" in f:
                root = f["model_weights"]  # written by Model.save, not save_weights
            weights = {}
            for layer_name in _names_attribute(path, root, "layer_names"):
                if layer_name not in root:
                    raise ValueError(f"{path}: layer {layer_name!r} is listed but has no group")
                layer = root[layer_name]
                if not isinstance(layer, h5py.Group):
                    raise ValueError(f"{path}: layer {layer_name!r} is not a group")
                for weight_name in _names_attribute(path, layer, "weight_names"):
                    dataset = layer.get(weight_name)
                    if not isinstance(dataset, h5py.Dataset):
                        raise ValueError(f"{path}: weight {layer_name}/{weight_name} is listed but missing")
                    if weight_name in weights:
                        raise ValueError(f"{path}: weight {weight_name!r} appears in two layers")
                    weights[weight_name] = np.asarray(dataset[()])
            return weights
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path}: corrupt or truncated HDF5 file ({exc})") from None
    except Exception as exc:  # h5py reports damaged files as OSError, KeyError, RuntimeError...
        raise ValueError(f"{path}: corrupt or truncated HDF5 file ({type(exc).__name__}: {exc})") from None
