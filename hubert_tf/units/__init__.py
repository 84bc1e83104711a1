"""Discrete speech units and HuBERT pretraining targets: MFCC features, mini-batch k-means, layer
features, and audio -> unit sequences (with the `hubert-tf units` command).

    >>> from hubert_tf.units import fit_mfcc_kmeans, mfcc_labels                  # doctest: +SKIP
    >>> km = fit_mfcc_kmeans(paths, n_clusters=100); km.save("km100.npz")        # doctest: +SKIP
    >>> labels = mfcc_labels(paths, km)  # 100 Hz targets: label_rate=100   # doctest: +SKIP

Names load on first use (PEP 562), so `hubert-tf --help` (which mounts the `units` command from
`hubert_tf.units.cli`) imports no TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Imported now, not lazily: the function `mfcc` shares its name with its module, and importing the
# module `hubert_tf.units.mfcc` later (e.g. from targets.py) would bind the module over the function.
# Binding the function after the module is imported keeps `from hubert_tf.units import mfcc` the
# function. mfcc.py imports only numpy at module level (TensorFlow on first use).
from .mfcc import compute_deltas, mfcc

# Public name -> the submodule defining it.
_LAZY_NAMES = {
    "add_units_parser": ".cli", "run_units": ".cli", "units_main": ".cli",
    "audio_to_units": ".discrete", "dedup_units": ".discrete", "extract_layer_features": ".discrete",
    "read_units": ".discrete", "write_units": ".discrete",
    "KMeans": ".kmeans", "fit_kmeans": ".kmeans", "load_kmeans": ".kmeans",
    "fit_layer_kmeans": ".targets", "fit_mfcc_kmeans": ".targets", "mfcc_labels": ".targets",
    "pad_labels": ".targets",
}

__all__ = sorted([*_LAZY_NAMES, "compute_deltas", "mfcc"])

if TYPE_CHECKING:
    from .cli import add_units_parser, run_units, units_main
    from .discrete import audio_to_units, dedup_units, extract_layer_features, read_units, write_units
    from .kmeans import KMeans, fit_kmeans, load_kmeans
    from .targets import fit_layer_kmeans, fit_mfcc_kmeans, mfcc_labels, pad_labels


def __getattr__(name: str):
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
