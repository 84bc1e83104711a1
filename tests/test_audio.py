"""load_audio / resample: decoding, PCM scaling, mono mixing, anti-aliased resampling, errors."""

import io

import numpy as np
import pytest
import soundfile

from hubert_tf.processing import load_audio, resample

RATE_IN, RATE_OUT = 44100, 16000


def tone(freq=440.0, rate=RATE_IN, seconds=1.0, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def spectral_peak_hz(x, rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spectrum)]


def mean_energy(x):
    return float(np.mean(np.square(x, dtype=np.float64)))


def test_resampled_tone_keeps_pitch_length_and_energy():
    x = tone(seconds=2.0)
    y = load_audio((x, RATE_IN), sampling_rate=RATE_OUT)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == round(len(x) * RATE_OUT / RATE_IN) == 32000
    assert abs(spectral_peak_hz(y, RATE_OUT) - 440.0) <= 0.5  # FFT bins are 0.5 Hz wide here
    # Energy away from the filter's edge transients.
    assert mean_energy(y[800:-800]) == pytest.approx(mean_energy(x[2205:-2205]), rel=0.01)


def test_resampling_removes_content_above_the_new_nyquist():
    # 12 kHz cannot exist at 16 kHz; an anti-aliasing filter removes it instead of folding it to 4 kHz.
    y = resample(tone(12000.0), RATE_IN, RATE_OUT)
    assert mean_energy(y[800:-800]) < 1e-4 * mean_energy(tone(12000.0))


def test_same_rate_is_identity():
    x = tone(rate=16000)
    np.testing.assert_array_equal(load_audio((x, 16000)), x)


@pytest.mark.parametrize("fmt, subtype, atol", [("WAV", "PCM_16", 1e-4), ("FLAC", "PCM_24", 1e-6),
                                                ("OGG", "VORBIS", 0.05), ("WAV", "FLOAT", 0.0)])
def test_reads_files_file_objects_and_bytes(tmp_path, fmt, subtype, atol):
    x = tone(rate=16000, seconds=0.5)
    path = tmp_path / f"tone.{fmt.lower()}"
    soundfile.write(path, x, 16000, format=fmt, subtype=subtype)
    from_path = load_audio(path)
    with open(path, "rb") as f:
        from_file = load_audio(f)
    from_bytes = load_audio(path.read_bytes())
    from_str = load_audio(str(path))
    for y in (from_path, from_file, from_bytes, from_str):
        assert y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_allclose(y, x, atol=atol)


def test_integer_pcm_is_scaled_to_unit_range():
    x = tone(rate=16000)
    int16 = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio((int16, 16000)), x, atol=1e-4)
    int32 = (x.astype(np.float64) * 2**31).astype(np.int32)
    np.testing.assert_allclose(load_audio((int32, 16000)), x, atol=1e-6)
    uint8 = np.round(x * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(load_audio((uint8, 16000)), x, atol=1e-2)
    assert load_audio((np.array([-32768, 32767], np.int16), 16000)).tolist() == pytest.approx([-1.0, 32767 / 32768])


def test_channels_are_averaged_to_mono(tmp_path):
    left, right = tone(rate=16000), tone(220.0, rate=16000)
    expected = (left + right) / 2
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-7)
    # Arrays: channels are on the shorter axis, first or last.
    np.testing.assert_allclose(load_audio((np.stack([left, right]), 16000)), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio((np.stack([left, right], axis=1), 16000)), expected, atol=1e-7)


def test_datasets_audio_dict():
    x = tone()
    y = load_audio({"array": x, "sampling_rate": RATE_IN, "path": None})
    assert len(y) == 16000


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file_names_it(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav"):
        load_audio(path)


def test_unreadable_file_names_it(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio")
    with pytest.raises(ValueError, match="notes.txt.*cannot decode"):
        load_audio(path)
    with pytest.raises(ValueError, match="audio bytes"):
        load_audio(b"garbage bytes")


def test_file_without_samples_names_it(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="silence.wav.*no audio samples"):
        load_audio(path)


@pytest.mark.parametrize(
    "source, error, message",
    [
        ((np.array([0.0, np.nan]), 16000), ValueError, "non-finite"),
        ((np.zeros(0), 16000), ValueError, "no audio samples"),
        ((np.zeros((2, 2, 2)), 16000), ValueError, "1-D or 2-D"),
        ((np.zeros(10), 0), ValueError, "orig_rate"),
        ((np.array(["a"]), 16000), ValueError, "numbers"),
        (np.zeros(10), TypeError, r"\(array, rate\)"),
        (b"", ValueError, "empty"),
        (3.5, TypeError, "float"),
        ({"array": np.zeros(3)}, ValueError, "sampling_rate"),
    ],
)
def test_bad_sources(source, error, message):
    with pytest.raises(error, match=message):
        load_audio(source)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path.name)):
        load_audio(tmp_path)


def test_file_object_without_audio():
    with pytest.raises(ValueError, match="cannot decode"):
        load_audio(io.BytesIO(b"RIFF nonsense"))
