"""MFCC targets of HuBERT's first iteration: 13 coefficients + deltas + delta-deltas (39 dims) at 100 Hz,
computed with `tf.signal`. TensorFlow is imported on first use, not with this module."""

from __future__ import annotations

import functools

import numpy as np

SAMPLING_RATE = 16000
WINDOW_SECONDS = 0.025  # 400 samples at 16 kHz
HOP_SECONDS = 0.010  # 160 samples: 100 frames per second
LOG_FLOOR = 1e-6  # floor of the mel energies before the log (silence)


def compute_deltas(features, window: int = 2):
    """Regression deltas along time: d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum_{n=1..N} n^2),
    the edges padded by repeating the first / last frame (HTK, Kaldi, torchaudio's `compute_deltas`).

    Args:
        features: [..., frames, dims] array or tensor.
        window: int. N, the frames on each side (2: a 5-frame window).

    Returns:
        float32 tensor, the shape of `features`.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    import tensorflow as tf

    x = tf.convert_to_tensor(features, tf.float32)
    frames = tf.shape(x)[-2]
    # Clamped indices repeat the edge frames.
    index = tf.range(frames)
    denominator = 2.0 * sum(n * n for n in range(1, window + 1))
    delta = tf.zeros_like(x)
    for n in range(1, window + 1):
        ahead = tf.gather(x, tf.minimum(index + n, frames - 1), axis=-2)
        behind = tf.gather(x, tf.maximum(index - n, 0), axis=-2)
        delta += n * (ahead - behind)
    return delta / denominator


@functools.lru_cache(maxsize=None)
def _log_mel_function():
    """The compiled log-mel spectrogram, built (and TensorFlow imported) on the first call."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def log_mel(audio, sampling_rate, num_mel_bins, frame_length, frame_step, fft_length):
        stft = tf.signal.stft(audio, frame_length=frame_length, frame_step=frame_step, fft_length=fft_length,
                              window_fn=tf.signal.hann_window)  # [frames, fft_length // 2 + 1]
        power = tf.square(tf.abs(stft))
        mel_matrix = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=num_mel_bins, num_spectrogram_bins=fft_length // 2 + 1, sample_rate=sampling_rate,
            lower_edge_hertz=20.0, upper_edge_hertz=sampling_rate / 2.0,
        )  # [bins, mels]
        return tf.math.log(tf.maximum(tf.matmul(power, mel_matrix), LOG_FLOOR))  # [frames, mels]

    return log_mel


def mfcc(audio, sampling_rate: int = SAMPLING_RATE, num_coefficients: int = 13, num_mel_bins: int = 23,
         deltas: bool = True) -> np.ndarray:
    """MFCC features of one waveform, the first-iteration HuBERT targets.

    25 ms Hann windows every 10 ms, power spectrum (FFT size the next power of two), `num_mel_bins`
    triangular mel filters from 20 Hz to Nyquist, log, DCT-II (`tf.signal.mfccs_from_log_mel_spectrograms`),
    the first `num_coefficients`; then deltas and delta-deltas (`compute_deltas`, N = 2). As in HuBERT's
    recipe (Kaldi MFCCs: 23 mel bins, 13 coefficients), up to Kaldi's dither, pre-emphasis and window.

    Args:
        audio: float [samples] waveform (mono).
        sampling_rate: int. Defaults to 16000.
        num_coefficients: int. Defaults to 13.
        num_mel_bins: int. Defaults to 23 (Kaldi's default).
        deltas: bool. Append deltas and delta-deltas. Defaults to True.

    Returns:
        float32 numpy array [frames, 3 * num_coefficients] (or [frames, num_coefficients]), frames =
        1 + (samples - window) // hop: 98 for one second at 16 kHz.

    Example:

    >>> import numpy as np
    >>> mfcc(np.random.default_rng(0).standard_normal(16000).astype("float32")).shape
    (98, 39)
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be one mono waveform [samples], got shape {audio.shape}")
    frame_length = int(round(WINDOW_SECONDS * sampling_rate))
    frame_step = int(round(HOP_SECONDS * sampling_rate))
    if audio.shape[0] < frame_length:
        raise ValueError(f"audio has {audio.shape[0]} samples, fewer than one {frame_length}-sample window")
    fft_length = 1 << (frame_length - 1).bit_length()
    import tensorflow as tf

    log_mel = _log_mel_function()(tf.constant(audio), float(sampling_rate), num_mel_bins, frame_length, frame_step,
                                  fft_length)
    coefficients = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[:, :num_coefficients]  # [frames, 13]
    if deltas:
        first = compute_deltas(coefficients)
        coefficients = tf.concat([coefficients, first, compute_deltas(first)], axis=-1)  # [frames, 39]
    return coefficients.numpy().astype(np.float32)
