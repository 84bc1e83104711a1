"""Audio input: read any libsndfile format, mix to mono, resample to the model's rate.

`soundfile` (libsndfile: wav, flac, ogg/vorbis, opus, mp3 on recent builds, ...) decodes files and
`soxr` (the SoX resampler: band-limited, anti-aliased) changes the rate. Both are imported only when
needed, so `import hubert_tf` stays light.
"""

from __future__ import annotations

import io
import os

import math
import numbers

import numpy as np

from .normalize import all_finite

# Sampling rates accepted anywhere (source and target): telephone-band 1 kHz up to 384 kHz, the highest
# rate of studio converters. A rate outside, NaN or infinite is an error, not a resampling request: an
# infinite rate spins soxr forever, 1e-9 Hz or a WAV header claiming 1 Hz asks for gigabytes.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 384_000
# Longest file `load_audio` decodes unless told otherwise: 4 hours. The check uses the header's frame
# count before anything is decoded, so a 100-byte header claiming 2**36 samples is refused without
# allocating; decoding then mixes to mono block by block, so memory is 4 bytes per frame.
DEFAULT_MAX_DURATION_S = 4 * 3600.0
MAX_CHANNELS = 256
_BLOCK_FRAMES = 1 << 16  # frames decoded at a time (x channels x 4 bytes)


def check_sampling_rate(rate, name="sampling_rate"):
    """Returns `rate` as a number of Hz, or raises ValueError naming it.

    Args:
        rate: int or float. A sampling rate in Hz.
        name: str. What to call it in the error ("sampling_rate", "the rate of 'a.wav'", ...).

    Raises:
        ValueError: not a real number, not finite, or outside [MIN_SAMPLING_RATE, MAX_SAMPLING_RATE].

    Example:

    >>> check_sampling_rate(44100)
    44100
    >>> check_sampling_rate(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: sampling_rate must be a finite number of Hz in [1000, 384000], got inf
    """
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise ValueError(f"{name} must be a number of Hz, got {rate!r} ({type(rate).__name__})")
    if not (math.isfinite(rate) and MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE):
        raise ValueError(f"{name} must be a finite number of Hz in [{MIN_SAMPLING_RATE}, "
                         f"{MAX_SAMPLING_RATE}], got {rate!r}")
    return int(rate) if float(rate).is_integer() else float(rate)


def load_audio(source, sampling_rate=16000, *, max_duration_s=DEFAULT_MAX_DURATION_S):
    """Loads audio as a float32 mono waveform at `sampling_rate`.

    Args:
        source: one of
            - a path (str or os.PathLike) to any file libsndfile reads (wav, flac, ogg, ...);
            - a binary file-like object (``open(path, "rb")``, ``io.BytesIO``);
            - the encoded file as ``bytes``;
            - an ``(array, rate)`` pair of samples and their rate in Hz; the array is
              ``[samples]`` or 2-D with channels on its shorter axis (``[samples, channels]`` as
              soundfile returns, or ``[channels, samples]``); integer PCM is scaled to [-1, 1];
            - a ``{"array": ..., "sampling_rate": ...}`` dict (the Hugging Face `datasets` Audio format)
              or ``{"raw": ..., "sampling_rate": ...}`` (the transformers pipelines' input).
            Rates must be finite and in [1 kHz, 384 kHz].
        sampling_rate: int. Rate of the returned waveform in Hz. Defaults to 16000 (HuBERT's).
        max_duration_s: float. Longest file (path, file object or bytes) decoded, checked against its
            header before decoding. Defaults to 4 hours; arrays are not limited (they exist already).

    Returns:
        A 1-D float32 numpy array ``[samples]``: channels averaged, resampled with soxr's
        high-quality anti-aliasing filter when the source rate differs.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be decoded or is longer than `max_duration_s`, or the audio is
            empty, has non-finite samples, more than 2 dimensions, or a rate that is not finite or
            outside [1 kHz, 384 kHz]. File errors name the file.

    Example:

    >>> import numpy as np
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    >>> waveform = load_audio((tone, 44100), sampling_rate=16000)
    >>> waveform.shape, waveform.dtype
    ((16000,), dtype('float32'))
    """
    sampling_rate = check_sampling_rate(sampling_rate)
    samples, rate, name, channel_axis = _read(source, max_duration_s)
    rate = check_sampling_rate(rate, f"the sampling rate of {name}")
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
        # One channel: a view, not a copy (an hour of audio is 230 MB).
        samples = ((samples[:, 0] if channel_axis == 1 else samples[0]) if samples.shape[channel_axis] == 1
                   else samples.mean(axis=channel_axis, dtype=np.float32))
    if not all_finite(samples):
        raise ValueError(f"{name}: contains non-finite samples (NaN or inf)")
    return resample(samples, rate, sampling_rate)


def resample(waveform, orig_rate, target_rate):
    """Resamples a mono waveform with soxr's high-quality (anti-aliased) filter.

    Args:
        waveform: 1-D float array ``[samples]``.
        orig_rate: int or float. Its rate in Hz, in [1 kHz, 384 kHz].
        target_rate: int or float. The wanted rate in Hz, in [1 kHz, 384 kHz].

    Returns:
        A float32 array of ``round(samples * target_rate / orig_rate)`` samples (the input,
        as float32, when the rates are equal).

    Example:

    >>> import numpy as np
    >>> resample(np.zeros(48000, np.float32), 48000, 16000).shape
    (16000,)
    """
    orig_rate = check_sampling_rate(orig_rate, "orig_rate")
    target_rate = check_sampling_rate(target_rate, "target_rate")
    waveform = np.ascontiguousarray(waveform, dtype=np.float32)
    if orig_rate == target_rate:
        return waveform
    try:
        import soxr
    except ImportError as error:  # pragma: no cover - soxr is a dependency
        raise ImportError("Resampling needs the `soxr` package: pip install soxr") from error
    return np.ascontiguousarray(soxr.resample(waveform, orig_rate, target_rate, quality="HQ"), dtype=np.float32)


def _read(source, max_duration_s):
    """Returns (samples, rate, name for messages, channel axis or None if unknown) for any source."""
    if isinstance(source, dict):
        keys = [k for k in ("array", "raw") if k in source]
        if len(keys) != 1 or "sampling_rate" not in source:
            raise ValueError(f"an audio dict needs 'array' (or 'raw') and 'sampling_rate' keys, got {sorted(source)}")
        return np.asarray(source[keys[0]]), source["sampling_rate"], "audio array", None
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
        return _decode(path, repr(path), max_duration_s)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ValueError("audio bytes are empty (0 bytes)")
        return _decode(io.BytesIO(bytes(source)), "audio bytes", max_duration_s)
    if hasattr(source, "read"):
        return _decode(source, repr(getattr(source, "name", "audio file object")), max_duration_s)
    if isinstance(source, np.ndarray) or isinstance(source, (list, tuple)):
        raise TypeError(
            "load_audio needs the sampling rate of an array: pass (array, rate), e.g. load_audio((samples, 44100))"
        )
    raise TypeError(
        f"cannot load audio from a {type(source).__name__}; pass a path, file object, bytes or (array, rate)"
    )


def _decode(file, name, max_duration_s):
    """Decodes a file to mono float32 [frames, 1] after checking its header (rate, channels, length)."""
    import soundfile  # imported here: libsndfile is only needed to decode files

    if not (isinstance(max_duration_s, numbers.Real) and max_duration_s > 0):
        raise ValueError(f"max_duration_s must be a positive number of seconds, got {max_duration_s!r}")
    try:
        with soundfile.SoundFile(file) as sound:
            # The header, checked before a single sample is decoded or allocated.
            rate, frames, channels = sound.samplerate, sound.frames, sound.channels
            rate = check_sampling_rate(rate, f"the sampling rate of {name} (from its header)")
            if not 1 <= channels <= MAX_CHANNELS:
                raise ValueError(f"{name}: its header declares {channels} channels (at most {MAX_CHANNELS} "
                                 "are read)")
            limit = int(max_duration_s * rate)
            if frames > limit:
                raise ValueError(f"{name}: its header declares {frames} frames ({frames / rate:.0f} s at "
                                 f"{rate} Hz), longer than max_duration_s={max_duration_s:g} s; pass a larger "
                                 "load_audio(..., max_duration_s=...) to read it")
            mono = _decode_mono(sound, frames, channels, name)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(f"{name}: cannot decode audio ({error})") from error
    return mono[:, None], rate, name, 1  # [samples, 1 channel]


def _decode_mono(sound, frames, channels, name):
    """Reads at most `frames` frames block by block into one float32 array, averaging the channels
    (so a stereo file needs 4 bytes per frame, not 8 plus a float copy)."""
    try:
        out = np.empty(frames, np.float32)
    except MemoryError:
        raise ValueError(f"{name}: {frames} frames need {frames * 4 / 2**30:.1f} GiB, more memory than is "
                         "free") from None
    block = np.empty((_BLOCK_FRAMES, channels), np.float32)
    done = 0
    while done < frames:
        wanted = min(_BLOCK_FRAMES, frames - done)
        count = len(sound.read(wanted, dtype="float32", always_2d=True, out=block[:wanted]))
        if count == 0:  # the header over-stated the length: keep what the file holds
            break
        out[done:done + count] = block[:count].mean(axis=1) if channels > 1 else block[:count, 0]
        done += count
    return out[:done]


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
