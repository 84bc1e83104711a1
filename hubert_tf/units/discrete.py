"""Discrete units: HuBERT layer features -> k-means cluster ids, per file (the second-iteration targets
of HuBERT pretraining, and the "units" of textless NLP / speech resynthesis)."""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from .kmeans import KMeans

Audio = Union[str, os.PathLike, np.ndarray]


def read_audio(source, sampling_rate: int = 16000) -> np.ndarray:
    """A path or an array -> float32 mono waveform (`hubert_tf.processing.load_audio`)."""
    if isinstance(source, np.ndarray) and source.ndim == 1:
        return source.astype(np.float32, copy=False)
    from ..processing import load_audio

    return load_audio(source, sampling_rate=sampling_rate)


def load_model(model):
    """A model, or a directory / hub id loaded as `TFHubertModel` (heads' weights are ignored), once:
    the pipelines' cache (`hubert_tf.pipeline_cache`) keeps it, and the graphs compiled for it, for the
    next call with the same files."""
    if isinstance(model, (str, os.PathLike)):
        from .. import pipeline_cache
        from ..modeling import TFHubertModel

        return pipeline_cache.load(TFHubertModel, os.fspath(model))
    if not hasattr(model, "hubert"):
        raise TypeError(f"model must be a hubert_tf model or a checkpoint path, got {type(model).__name__}")
    return model


def extract_layer_features(model, audio: Audio | Sequence[Audio], layer: int, processor=None, progress=None):
    """Frame features of `audio` at encoder layer `layer`, e.g. for k-means targets of the next iteration.

    The same path as `hubert_tf.extract_features` (the processor's normalisation, chunked inference for
    long files, only the layers up to `layer` computed), so units and features always agree.

    Args:
        model: any hubert_tf HuBERT model (its `hubert` body is run without masking or dropout), or a
            checkpoint directory / hub id.
        audio: a mono 16 kHz waveform [samples], an audio file path, or a list of them.
        layer: int in [0, num_hidden_layers]: `hidden_states[layer]` in the transformers 4.x convention,
            0 = the encoder input, L = the output of the L-th Transformer layer (fairseq's 1-based
            `output_layer`); the last is `last_hidden_state`. Negative values count from the end.
        processor: optional feature extractor / processor (or its directory); defaults to the model's
            own (zero-mean unit-variance normalisation when it has none).
        progress: optional callable receiving the samples done after each batch (as `extract_features`).

    Returns:
        float32 numpy array [frames, hidden_size] (a list of them for a list of inputs).
    """
    from ..pipelines import extract_features

    model = load_model(model)
    num_layers = model.config.num_hidden_layers
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(f"layer must be in [0, {num_layers}] (num_hidden_layers={num_layers}), got {layer!r}")
    items = [read_audio(a) if isinstance(a, np.ndarray) else a for a in audio] if isinstance(audio, list) else (
        read_audio(audio) if isinstance(audio, np.ndarray) else audio)
    return extract_features(items, model, processor=processor, layer=int(layer), progress=progress)


def dedup_units(units: np.ndarray) -> np.ndarray:
    """Collapses runs of the same unit: [5, 5, 3, 3, 3, 5] -> [5, 3, 5]."""
    units = np.asarray(units)
    if units.size == 0:
        return units
    keep = np.concatenate([[True], units[1:] != units[:-1]])
    return units[keep]


def audio_to_units(audio_or_paths: Audio | Sequence[Audio], model, layer: int, kmeans, dedup: bool = False,
                   output: str | os.PathLike | None = None, processor=None) -> list[np.ndarray]:
    """Discrete unit sequences of audio files or waveforms: layer features -> nearest k-means centroid.

    Args:
        audio_or_paths: one path or waveform, or a list of them. Each file is run alone (no padding).
        model: a hubert_tf model or a checkpoint directory / hub id (loaded as `TFHubertModel`).
        layer: int. Encoder layer whose features are clustered (see `extract_layer_features`).
        kmeans: a fitted `KMeans`, or the path of a file written by `KMeans.save`.
        dedup: bool. Collapse consecutive repeated units. Defaults to False.
        output: optional path; writes one line per input, `<name>\\t<space-separated units>` (the name is
            the path, or the index for arrays).
        processor: optional feature extractor / processor (see `extract_layer_features`).

    Returns:
        A list with one int64 array [frames] (fewer with `dedup`) per input.

    Example:

    >>> units = audio_to_units(["a.wav", "b.wav"], "facebook/hubert-base-ls960", 6, "km500.npz")  # doctest: +SKIP
    """
    if isinstance(audio_or_paths, (str, os.PathLike)) or (
            isinstance(audio_or_paths, np.ndarray) and audio_or_paths.ndim == 1):
        items = [audio_or_paths]
    else:
        items = list(audio_or_paths)
    model = load_model(model)
    kmeans = kmeans if isinstance(kmeans, KMeans) else KMeans.load(kmeans)
    check_kmeans_fits(kmeans, model)
    results = []
    for features in extract_layer_features(model, items, layer, processor=processor):
        units = kmeans.predict(features)
        results.append(dedup_units(units) if dedup else units)
    if output is not None:
        names = [os.fspath(i) if isinstance(i, (str, os.PathLike)) else str(n) for n, i in enumerate(items)]
        write_units(output, names, results)
    return results


def check_kmeans_fits(kmeans: KMeans, model) -> None:
    """Raises a ValueError when the centroids' dims are not the model's layer feature size."""
    if kmeans.dim != model.config.hidden_size:
        raise ValueError(f"the k-means centroids have {kmeans.dim} dims but the model's layer features have "
                         f"{model.config.hidden_size} (hidden_size): cluster features of this model")


def units_line(name: str, units: np.ndarray) -> str:
    """One line of a units file: `<name>\\t<space-separated units>\\n`."""
    return f"{name}\t{' '.join(str(int(u)) for u in units)}\n"


def write_units(path, names: Sequence[str], units: Sequence[np.ndarray]) -> None:
    """Writes `<name>\\t<units>` lines to `path` ("-" = standard output)."""
    lines = "".join(units_line(name, seq) for name, seq in zip(names, units))
    if os.fspath(path) == "-":
        import sys

        sys.stdout.write(lines)
        return
    from ..files import atomic_write

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_write(path, "w") as f:  # never a half-written units file under the final name
        f.write(lines)


def read_units(path) -> dict[str, np.ndarray]:
    """Reads a file written by `write_units` into {name: int64 units}."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            name, sep, text = line.rpartition("\t")
            if not sep:
                raise ValueError(f"{path}:{number}: expected '<name>\\t<units>'")
            out[name] = np.array([int(u) for u in text.split()], np.int64)
    return out
