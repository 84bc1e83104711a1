"""Audio input: read any libsndfile format, mix to mono, resample to the model's rate.

`soundfile` (libsndfile: wav, flac, ogg/vorbis, opus, mp3 on recent builds, ...) decodes files and
`soxr` (the SoX resampler: band-limited, anti-aliased) changes the rate. Both are imported only when
needed, so `import hubert_tf` stays light.
"""

from __future__ import annotations

import io
import os

import numpy as np


def load_audio(source, sampling_rate=16000):
    """Loads audio as a float32 mono waveform at `sampling_rate`.

    Args:
        source: one of
            - a path (str or os.PathLike) to any file libsndfile reads (wav, flac, ogg, ...);
            - a binary file-like object (``open(path, "rb")``, ``io.BytesIO``);
            - the encoded file as ``bytes``;
            - an ``(array, rate)`` pair of samples and their rate in Hz; the array is
              ``[samples]`` or 2-D with channels on its shorter axis (``[samples, channels]`` as
              soundfile returns, or ``[channels, samples]``); integer PCM is scaled to [-1, 1];
            - a ``{"array": ..., "sampling_rate": ...}`` dict (the Hugging Face `datasets` Audio format).
        sampling_rate: int. Rate of the returned waveform in Hz. Defaults to 16000 (HuBERT's).

    Returns:
        A 1-D float32 numpy array ``[samples]``: channels averaged, resampled with soxr's
        high-quality anti-aliasing filter when the source rate differs.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be decoded, or the audio is empty, has non-finite samples,
            more than 2 dimensions, or a non-positive rate. File errors name the file.

    Example:

    >>> import numpy as np
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    >>> waveform = load_audio((tone, 44100), sampling_rate=16000)
    >>> waveform.shape, waveform.dtype
    ((16000,), dtype('float32'))
    """
    samples, rate, name, channel_axis = _read(source)
    if samples.ndim > 2:
        raise ValueError(f"{name}: audio must be 1-D or 2-D (samples and channels), got shape {samples.shape}")
    if samples.size == 0:
        raise ValueError(f"{name}: contains no audio samples")
    samples = _to_float32(samples, name)
    if samples.ndim == 2:
        if channel_axis is None:
            # An array: channels are on the shorter axis (soundfile gives [samples, channels],
            # torchaudio [channels, samples]).
            channel_axis = 1 if samples.shape[0] >= samples.shape[1] else 0
        samples = samples.mean(axis=channel_axis, dtype=np.float32)
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{name}: contains non-finite samples (NaN or inf)")
    return resample(samples, rate, sampling_rate)


def resample(waveform, orig_rate, target_rate):
    """Resamples a mono waveform with soxr's high-quality (anti-aliased) filter.

    Args:
        waveform: 1-D float array ``[samples]``.
        orig_rate: int or float. Its rate in Hz.
        target_rate: int or float. The wanted rate in Hz.

    Returns:
        A float32 array of ``round(samples * target_rate / orig_rate)`` samples (the input,
        as float32, when the rates are equal).

    Example:

    >>> import numpy as np
    >>> resample(np.zeros(48000, np.float32), 48000, 16000).shape
    (16000,)
    """
    for label, rate in (("orig_rate", orig_rate), ("target_rate", target_rate)):
        if not np.isscalar(rate) or not rate > 0:
            raise ValueError(f"{label} must be a positive number of Hz, got {rate!r}")
    waveform = np.ascontiguousarray(waveform, dtype=np.float32)
    if orig_rate == target_rate:
        return waveform
    try:
        import soxr
    except ImportError as error:  # pragma: no cover - soxr is a dependency
        raise ImportError("Resampling needs the `soxr` package: pip install soxr") from error
    return np.ascontiguousarray(soxr.resample(waveform, orig_rate, target_rate, quality="HQ"), dtype=np.float32)


def _read(source):
    """Returns (samples, rate, name for messages, channel axis or None if unknown) for any source."""
    if isinstance(source, dict):
        if "array" not in source or "sampling_rate" not in source:
            raise ValueError(f"an audio dict needs 'array' and 'sampling_rate' keys, got {sorted(source)}")
        return np.asarray(source["array"]), source["sampling_rate"], "audio array", None
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (str, bytes)):
        array, rate = source
        if np.isscalar(array) or rate is None or not np.isscalar(rate):
            raise ValueError("an (array, rate) pair needs the samples first and the rate in Hz second")
        return np.asarray(array), rate, "audio array", None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"audio file not found: {path!r}")
        if os.path.isdir(path):
            raise IsADirectoryError(f"expected an audio file, got the directory {path!r}")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{path!r}: the audio file is empty (0 bytes)")
        return _decode(path, repr(path))
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ValueError("audio bytes are empty (0 bytes)")
        return _decode(io.BytesIO(bytes(source)), "audio bytes")
    if hasattr(source, "read"):
        return _decode(source, repr(getattr(source, "name", "audio file object")))
    if isinstance(source, np.ndarray) or isinstance(source, (list, tuple)):
        raise TypeError(
            "load_audio needs the sampling rate of an array: pass (array, rate), e.g. load_audio((samples, 44100))"
        )
    raise TypeError(
        f"cannot load audio from a {type(source).__name__}; pass a path, file object, bytes or (array, rate)"
    )


def _decode(file, name):
    import soundfile  # imported here: libsndfile is only needed to decode files

    try:
        samples, rate = soundfile.read(file, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(f"{name}: cannot decode audio ({error})") from error
    return samples, rate, name, 1  # always_2d: [samples, channels]


def _to_float32(samples, name):
    """Float arrays as float32; integer PCM scaled to [-1, 1] by its type's full scale."""
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32, copy=False)
    if np.issubdtype(samples.dtype, np.signedinteger):
        return (samples / float(-np.iinfo(samples.dtype).min)).astype(np.float32)
    if np.issubdtype(samples.dtype, np.unsignedinteger):  # e.g. 8-bit wav: unsigned, centred on 128
        half = float(np.iinfo(samples.dtype).max) / 2 + 0.5
        return ((samples - half) / half).astype(np.float32)
    raise ValueError(f"{name}: samples must be numbers, got dtype {samples.dtype}")
