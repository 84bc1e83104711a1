"""Discrete speech units and HuBERT pretraining targets: MFCC features, mini-batch k-means, layer
features, and audio -> unit sequences (with the `hubert-tf units` command).

    >>> from hubert_tf.units import fit_mfcc_kmeans, mfcc_labels                  # doctest: +SKIP
    >>> km = fit_mfcc_kmeans(paths, n_clusters=100); km.save("km100.npz")        # doctest: +SKIP
    >>> labels = mfcc_labels(paths, km)  # 100 Hz targets: label_rate=100   # doctest: +SKIP
"""

from .cli import add_units_parser, run_units, units_main
from .discrete import audio_to_units, dedup_units, extract_layer_features, read_units, write_units
from .kmeans import KMeans, fit_kmeans, load_kmeans
from .mfcc import compute_deltas, mfcc
from .targets import fit_layer_kmeans, fit_mfcc_kmeans, mfcc_labels, pad_labels

__all__ = [
    "KMeans",
    "add_units_parser",
    "audio_to_units",
    "compute_deltas",
    "dedup_units",
    "extract_layer_features",
    "fit_kmeans",
    "fit_layer_kmeans",
    "fit_mfcc_kmeans",
    "load_kmeans",
    "mfcc",
    "mfcc_labels",
    "pad_labels",
    "read_units",
    "run_units",
    "units_main",
    "write_units",
]
