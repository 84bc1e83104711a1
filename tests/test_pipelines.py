"""transcribe / extract_features: inputs of every kind, exact batching (group-norm models included),
chunked inference for long audio with flat memory, timestamps, and no retracing per length."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from hubert_tf import HubertProcessor, TFHubertForCTC
from hubert_tf.modeling.inference import inference_function, tracing_count
from hubert_tf.processing.normalize import normalize
from hubert_tf.pipelines import (
    _decode, extract_features, plan_chunks, run_chunked, transcribe,
)

RATE = 16000


def logits_fn(model):
    """The pipelines' compiled call: exact padding, logits only."""
    fn = inference_function(model, exact_padding=True)
    return lambda x, mask: fn(x, mask)["logits"]


def noise(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1


@pytest.fixture(scope="module")
def asr(asr_dir):
    return TFHubertForCTC.from_pretrained(asr_dir), HubertProcessor.from_pretrained(asr_dir)


@pytest.mark.parametrize("which", ["asr_dir", "asr_dir_layer_norm"])
def test_batch_equals_one_at_a_time(which, request):
    """Examples of different lengths batched together = one at a time, for group- and layer-norm models."""
    model = TFHubertForCTC.from_pretrained(request.getfixturevalue(which))
    audios = [normalize(noise(n, i)) for i, n in enumerate((6000, 17000, 9600))]
    run = lambda xs, b: run_chunked(xs, logits_fn(model), model.config, chunk_length_s=0,  # noqa: E731
                                    stride_length_s=None, batch_size=b, sampling_rate=RATE)
    together = run(audios, 3)
    for i, audio in enumerate(audios):
        alone = run([audio], 1)[0]
        assert together[i].shape == alone.shape
        np.testing.assert_allclose(together[i], alone, atol=1e-4, err_msg=f"{which} example {i}")


def test_inputs_of_every_kind_give_the_same_text(asr, tmp_path):
    model, processor = asr
    audio = noise(24000, 3)
    path = tmp_path / "a.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    expected = transcribe(audio, model, processor=processor)
    assert isinstance(expected, dict) and set(expected) == {"text"} and isinstance(expected["text"], str)
    assert transcribe(str(path), model, processor=processor) == expected
    assert transcribe((audio, RATE), model, processor=processor) == expected
    assert transcribe([audio, str(path)], model, processor=processor, batch_size=2) == [expected, expected]


def test_model_as_directory(asr_dir):
    audio = noise(20000, 4)
    model = TFHubertForCTC.from_pretrained(asr_dir)
    assert transcribe(audio, asr_dir) == transcribe(audio, model)


def test_processor_path_matches_pipeline(asr):
    """The pipeline's text equals the plain processor -> model -> argmax -> batch_decode path."""
    model, processor = asr
    audio = noise(30000, 5)
    inputs = processor(audio=audio, sampling_rate=RATE, return_tensors="np")
    logits = model(inputs["input_values"]).logits.numpy()
    assert transcribe(audio, model, processor=processor) == {"text": processor.batch_decode(logits.argmax(-1))[0]}


def test_chunk_plan_tiles_every_frame(asr):
    model, _ = asr
    config = model.config
    n = 16000 * 95 + 123
    chunks = plan_chunks(n, 0, config, 10.0, 2.0, RATE)
    covered = np.zeros(int(model.hubert.frame_lengths(n)), int)
    for c in chunks:
        assert c.start % 320 == 0 and c.stop - c.start <= 160000
        at = c.start // 320 + c.keep_start
        covered[at:at + c.keep_stop - c.keep_start] += 1
    assert (covered == 1).all()
    assert len(plan_chunks(16000 * 29, 0, config, None, None, RATE)) == 1  # auto: no chunks below 30 s
    assert len(plan_chunks(16000 * 61, 0, config, None, None, RATE)) > 1  # auto: 30 s chunks above


def test_chunked_logits_are_the_windows_outputs(asr):
    """Each stitched frame is that frame of its own window, run alone (stride regions dropped)."""
    model, _ = asr
    audio = normalize(noise(16000 * 7, 6))
    fn = logits_fn(model)
    stitched = run_chunked([audio], fn, model.config, chunk_length_s=2.0, stride_length_s=0.4, batch_size=2,
                           sampling_rate=RATE)[0]
    for c in plan_chunks(audio.size, 0, model.config, 2.0, 0.4, RATE):
        window = audio[c.start:c.stop][None]
        alone = fn(window, np.ones_like(window, np.int32)).numpy()[0]
        at = c.start // 320 + c.keep_start
        np.testing.assert_allclose(stitched[at:at + c.keep_stop - c.keep_start], alone[c.keep_start:c.keep_stop],
                                   atol=1e-4)
    whole = run_chunked([audio], fn, model.config, chunk_length_s=0, stride_length_s=None, batch_size=1,
                        sampling_rate=RATE)[0]
    assert whole.shape == stitched.shape
    np.testing.assert_allclose(
        run_chunked([audio], fn, model.config, chunk_length_s=60, stride_length_s=None, batch_size=1,
                    sampling_rate=RATE)[0], whole, atol=1e-5)


def test_word_and_char_timestamps(asr):
    _, processor = asr
    tok = processor.tokenizer
    # "HI THERE" aligned on 20 ms frames, with blanks (0) and repeats.
    ids = [0, 11, 11, 0, 10, 4, 4, 0, 6, 11, 5, 13, 13, 5, 0]
    out = _decode(tok, np.array(ids), "word", 0.02)
    assert out["text"] == "HI THERE"
    assert out["chunks"] == [{"text": "HI", "timestamp": (0.02, 0.1)}, {"text": "THERE", "timestamp": (0.16, 0.28)}]
    chars = _decode(tok, np.array(ids), "char", 0.02)["chunks"]
    assert "".join(c["text"] for c in chars) == "HI THERE"
    assert chars[0] == {"text": "H", "timestamp": (0.02, 0.06)}


def test_extract_features_layers(asr_dir):
    audio = noise(20000, 7)
    from hubert_tf import TFHubertModel

    model = TFHubertModel.from_pretrained(asr_dir)
    full = model(normalize(audio)[None], output_hidden_states=True).hidden_states
    one = extract_features(audio, asr_dir, layer=1)
    np.testing.assert_allclose(one, full[1][0].numpy(), atol=1e-5)
    many = extract_features([audio, audio[:9000]], asr_dir, layer=[0, -1], batch_size=2)
    np.testing.assert_allclose(many[0][-1], full[-1][0].numpy(), atol=1e-5)
    assert many[1][0].shape == (int(model.hubert.frame_lengths(9000)), 16)
    np.testing.assert_allclose(extract_features(audio, model, layer=None), full[-1][0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        extract_features(audio, model, layer=7)


def test_twenty_lengths_reuse_one_graph(asr_dir):
    model = TFHubertForCTC.from_pretrained(asr_dir)
    processor = HubertProcessor.from_pretrained(asr_dir)
    for n in range(4000, 24000, 1000):
        transcribe(noise(n, n), model, processor=processor)
    assert tracing_count(model) <= 2


def test_too_short_audio_names_the_minimum(asr):
    model, processor = asr
    with pytest.raises(ValueError, match="minimum of 400"):
        transcribe(noise(300), model, processor=processor)


def _peak_rss_mb(asr_dir, seconds):
    code = textwrap.dedent(f"""
        import resource, numpy as np
        from hubert_tf import TFHubertForCTC, HubertProcessor
        from hubert_tf.pipelines import transcribe
        model = TFHubertForCTC.from_pretrained({asr_dir!r})
        processor = HubertProcessor.from_pretrained({asr_dir!r})
        transcribe(np.zeros(16000, np.float32), model, processor=processor)  # warm up
        audio = (np.random.default_rng(0).standard_normal(16000 * {seconds}) * 0.1).astype(np.float32)
        transcribe(audio, model, processor=processor, batch_size=2)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


# slow: two 20-minute runs; test_extract_features_of_one_layer_keeps_only_that_layer bounds memory by default
@pytest.mark.slow
def test_long_audio_memory_stays_flat(asr_dir):
    """20 minutes take no more memory than 1 minute plus the audio itself (and its normalised copy)."""
    one_minute = _peak_rss_mb(asr_dir, 60)
    twenty_minutes = _peak_rss_mb(asr_dir, 1200)
    audio_mb = 16000 * 1200 * 4 / 2**20
    assert twenty_minutes <= one_minute + 3 * audio_mb + 64, (one_minute, twenty_minutes, audio_mb)


def test_the_callers_audio_is_not_modified(asr):
    model, processor = asr
    audio = noise(20000, 9) + 0.5
    before = audio.copy()
    transcribe(audio, model, processor=processor)
    np.testing.assert_array_equal(audio, before)
    assert abs(normalize(audio).mean()) < 1e-6 and abs(normalize(audio).std() - 1) < 1e-4


def test_extract_features_of_one_layer_keeps_only_that_layer(asr_dir, tmp_path):
    """A 20-minute file, one layer asked: peak RSS grows by at most the audio plus 1.5x the returned array
    (the other layers are neither computed past the one asked for nor kept)."""
    path = tmp_path / "long.wav"
    code = textwrap.dedent(f"""
        import resource, numpy as np, soundfile as sf
        from hubert_tf import TFHubertForCTC, extract_features
        rng = np.random.default_rng(0)
        sf.write({str(path)!r}, (rng.standard_normal(16000 * 1200) * 3000).astype(np.int16), 16000)
        sf.write({str(path)!r} + ".warm.wav", (rng.standard_normal(16000 * 61) * 3000).astype(np.int16), 16000)
        model = TFHubertForCTC.from_pretrained({asr_dir!r})
        extract_features({str(path)!r} + ".warm.wav", model, layer=1, batch_size=2)  # same chunk shapes
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        features = extract_features({str(path)!r}, model, layer=1, batch_size=2)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(before, after, features.nbytes, features.shape[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, returned, frames = map(int, out.stdout.split()[-4:])
    audio = 16000 * 1200 * 4  # float32 samples
    assert frames == 59999
    assert after - before <= audio + 1.5 * returned, (
        f"peak RSS grew by {(after - before) / 2**20:.1f} MiB for {audio / 2**20:.1f} MiB of audio and "
        f"{returned / 2**20:.1f} MiB returned")


def test_progress_counts_each_sample_once(asr):
    """Overlapping chunk strides are not counted twice: the progress total is the audio's length."""
    model, processor = asr
    counts = []
    audio = noise(16000 * 7 + 123, 4)
    transcribe(audio, model, processor=processor, chunk_length_s=2.0, stride_length_s=0.4, batch_size=2,
               progress=counts.append)
    assert sum(counts) == audio.size and len(counts) > 1
