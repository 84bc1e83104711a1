"""Discrete speech units and HuBERT pretraining targets: MFCC features, mini-batch k-means, layer
features, and audio -> unit sequences (with the `hubert-tf units` command).

    >>> from hubert_tf.units import fit_mfcc_kmeans, mfcc_labels                  # doctest: +SKIP
    >>> km = fit_mfcc_kmeans(paths, n_clusters=100); km.save("km100.npz")        # doctest: +SKIP
    >>> labels = mfcc_labels(paths, km)  # 100 Hz targets: label_rate=100   # doctest: +SKIP

Names load on first use (PEP 562), so `hubert-tf --help` (which mounts the `units` command from
`hubert_tf.units.cli`) imports no TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

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
    "read_km_bin": ".km_bin",
    "KMeans": ".kmeans", "fit_kmeans": ".kmeans", "load_kmeans": ".kmeans",
    "fit_layer_kmeans": ".targets", "fit_mfcc_kmeans": ".targets", "mfcc_labels": ".targets",
    "pad_labels": ".targets",
    "dump_features": ".shards", "dump_labels": ".shards", "learn_kmeans": ".shards", "load_shard": ".shards",
    "merge_labels": ".shards", "read_km_labels": ".shards", "read_manifest": ".shards",
    "sample_features": ".shards", "shard_range": ".shards", "write_manifest": ".shards",
}

__all__ = sorted([*_LAZY_NAMES, "compute_deltas", "mfcc"])

if TYPE_CHECKING:
    from .cli import add_units_parser, run_units, units_main
    from .discrete import audio_to_units, dedup_units, extract_layer_features, read_units, write_units
    from .km_bin import read_km_bin
    from .kmeans import KMeans, fit_kmeans, load_kmeans
    from .shards import (dump_features, dump_labels, learn_kmeans, load_shard, merge_labels, read_km_labels,
                         read_manifest, sample_features, shard_range, write_manifest)
    from .targets import fit_layer_kmeans, fit_mfcc_kmeans, mfcc_labels, pad_labels


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY_NAMES)
