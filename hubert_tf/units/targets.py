"""Pretraining targets: k-means on MFCCs (HuBERT iteration 1, 100 Hz) or on the features of a HuBERT
layer (iteration 2, the model's 50 Hz), and the frame labels they assign."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .discrete import Audio, extract_layer_features, load_model, read_audio
from .kmeans import KMeans
from .mfcc import mfcc


def fit_mfcc_kmeans(corpus: Sequence[Audio], n_clusters: int = 100, seed: int = 0, **kwargs) -> KMeans:
    """Fits k-means on the 39-dim MFCC frames of `corpus` (paths or 16 kHz waveforms).

    The metadata records `{"features": "mfcc", "label_rate": 100}`. `kwargs` go to `KMeans`.
    """
    features = [mfcc(read_audio(a)) for a in corpus]
    metadata = {**mfcc_kmeans_metadata(), **kwargs.pop("metadata", {})}
    return KMeans(n_clusters, seed=seed, metadata=metadata, **kwargs).fit(features)


def fit_layer_kmeans(model, corpus: Sequence[Audio], layer: int, n_clusters: int = 500, seed: int = 0,
                     **kwargs) -> KMeans:
    """Fits k-means on the layer-`layer` features of `model` over `corpus` (HuBERT's second iteration:
    layer 6 of the first-iteration base model, 500 clusters).

    The metadata records `{"features": "hubert", "layer": layer, "label_rate": <frames per second>}`.
    """
    model = load_model(model)
    features = extract_layer_features(model, list(corpus), layer)
    metadata = {**layer_kmeans_metadata(model, layer), **kwargs.pop("metadata", {})}
    return KMeans(n_clusters, seed=seed, metadata=metadata, **kwargs).fit(features)


def mfcc_kmeans_metadata() -> dict:
    """What a k-means file of MFCC units records: `{"features": "mfcc", "label_rate": 100}`."""
    return {"features": "mfcc", "label_rate": 100}


def layer_kmeans_metadata(model, layer: int) -> dict:
    """What a k-means file of layer units records: `{"features": "hubert", "layer", "label_rate"}`."""
    return {"features": "hubert", "layer": int(layer), "label_rate": 16000 / model.config.inputs_to_logits_ratio}


def mfcc_labels(corpus: Sequence[Audio], kmeans: KMeans, pad_to: int | None = None) -> np.ndarray | list:
    """MFCC cluster ids per 10 ms frame of each utterance (labels at 100 Hz: `label_rate=100`).

    Returns a list of int64 arrays, or, with `pad_to`, one int32 array [utterances, pad_to] padded with
    -100 (truncated if longer).
    """
    labels = [kmeans.predict(mfcc(read_audio(a))) for a in corpus]
    return labels if pad_to is None else pad_labels(labels, pad_to)


def pad_labels(labels: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stacks label sequences into int32 [n, length], padded with -100 (ignored by the losses)."""
    out = np.full((len(labels), length), -100, np.int32)
    for i, seq in enumerate(labels):
        n = min(len(seq), length)
        out[i, :n] = np.asarray(seq)[:n]
    return out
