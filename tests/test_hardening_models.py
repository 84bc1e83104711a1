"""Hardening, round 2, model side: bad audio and masks are refused in graph mode as in eager mode
(fit/predict, user tf.functions, SavedModel signatures), TFLite inputs are checked before the
interpreter sees them, float16 models refuse audio beyond their range, chunk settings are validated,
and exports are readable by other users and never leave a version missing."""

import os
import stat

import numpy as np
import pytest
import tensorflow as tf

from hubert_tf import HubertConfig, TFHubertForCTC, TFHubertModel, transcribe
from hubert_tf.export import export_saved_model, tflite_interpreter, to_tflite
from hubert_tf.pipelines import plan_chunks


@pytest.fixture(scope="module")
def config():
    return HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                        conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, vocab_size=12)


@pytest.fixture(scope="module")
def ctc(config):
    return TFHubertForCTC(config)


def audio(n=4000, seed=0):
    return np.random.default_rng(seed).standard_normal((2, n)).astype("float32")


def test_fit_refuses_a_nan_sample_and_keeps_the_weights(ctc):
    model = TFHubertForCTC(ctc.config)
    model.compile(optimizer="adam")
    x = audio()
    x[1, 100] = np.nan
    before = [w.numpy().copy() for w in model.trainable_weights]
    labels = np.array([[1, 2], [3, 4]], "int32")
    with pytest.raises(ValueError, match="input_values contains NaN or infinite"):
        model.fit({"input_values": x, "labels": labels}, epochs=1, verbose=0)
    for w, old in zip(model.trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), old)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(x, verbose=0)


def test_graph_mode_checks_short_audio_and_bad_masks(ctc):
    fn = tf.function(lambda x, m: ctc(x, attention_mask=m).logits,
                     input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None, None], tf.int32)])
    x = audio(4000)
    ones = np.ones_like(x, "int32")
    assert fn(x, ones).shape[1] > 0
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than the minimum of 400"):
        fn(x[:, :399], ones[:, :399])
    for bad, message in ((ones * 2, "only 0 .padding. and 1"), (ones * 0, "at least 400 valid samples"),
                         (-ones, "only 0 .padding. and 1")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(x, bad)
    # The same masks eagerly: ValueError.
    with pytest.raises(ValueError, match="at least 400 valid samples"):
        ctc(x, attention_mask=ones * 0)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_pcm_integer_audio_is_refused(ctc, dtype):
    with pytest.raises(ValueError, match=f"dtype {dtype}, i.e. raw PCM"):
        ctc(np.zeros((1, 4000), dtype))


def test_float16_model_refuses_audio_beyond_its_range(config):
    model = TFHubertModel(config, dtype="mixed_float16")
    x = audio() * 1e5  # e.g. int32 PCM cast to float
    with pytest.raises(ValueError, match="beyond float16's range"):
        model(x)
    assert np.isfinite(model(audio()).last_hidden_state.numpy()).all()


def test_saved_model_refuses_nan_audio_and_bad_masks(ctc, tmp_path):
    loaded = tf.saved_model.load(export_saved_model(ctc, tmp_path / "m", signatures=["serve"]))
    serve = loaded.signatures["serving_default"]
    x = audio()
    ones = np.ones_like(x, "int32")
    assert np.isfinite(serve(input_values=x, attention_mask=ones)["logits"].numpy()).all()
    x[0, 5] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        serve(input_values=x, attention_mask=ones)
    with pytest.raises(tf.errors.InvalidArgumentError, match="only 0"):
        serve(input_values=audio(), attention_mask=ones * 2)


def test_tflite_checks_inputs_before_the_interpreter(ctc, tmp_path):
    path = to_tflite(ctc, tmp_path / "m.tflite")
    interpreter = tflite_interpreter(path)
    runner = interpreter.get_signature_runner()
    assert runner(input_values=audio()[:1])["logits"].shape[1] > 0
    with pytest.raises(ValueError, match="399 samples, fewer than the minimum of 400"):
        runner(input_values=audio(399)[:1])
    with pytest.raises(ValueError, match="NaN"):
        runner(input_values=np.full((1, 4000), np.nan, "float32"))
    # The low-level API is checked too: resize to a too-short input, then invoke.
    interpreter = tflite_interpreter(path)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [1, 300])
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, np.zeros((1, 300), "float32"))
    with pytest.raises(ValueError, match="fewer than the minimum"):
        interpreter.invoke()


@pytest.mark.parametrize("chunk, stride, message", [
    (2.0, -0.1, "stride_length_s must be finite numbers >= 0"),
    (-1.0, None, "chunk_length_s must be a finite number >= 0"),
    (float("nan"), None, "chunk_length_s must be a finite number"),
    (0.01, None, "shorter than the model's receptive field"),
    (2.0, (0.99, 0.99), "must leave room"),
])
def test_chunk_settings_are_validated(config, chunk, stride, message):
    with pytest.raises(ValueError, match=message):
        plan_chunks(16000 * 5, 0, config, chunk, stride, 16000)


def test_negative_stride_through_transcribe(asr_dir):
    with pytest.raises(ValueError, match="stride_length_s"):
        transcribe(np.zeros(16000 * 3, "float32"), asr_dir, chunk_length_s=1.0, stride_length_s=-0.2)


def test_export_is_readable_and_overwrite_never_leaves_the_version_missing(ctc, tmp_path, monkeypatch):
    import hubert_tf.export as export_lib

    target = export_saved_model(ctc, tmp_path / "serving", version=1, signatures=["serve"])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~umask
    for root, _, files in os.walk(target):
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o666 & ~umask
    # Overwrite: the old version is swapped out in one step; a crash right after it leaves the new one.
    calls = []
    real = export_lib._exchange

    def exchange_then_crash(a, b):
        calls.append((a, b))
        assert real(a, b)
        raise KeyboardInterrupt("killed after the swap")

    monkeypatch.setattr(export_lib, "_exchange", exchange_then_crash)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(ctc, tmp_path / "serving", version=1, overwrite=True, signatures=["serve"])
    assert calls and os.path.exists(os.path.join(target, "saved_model.pb"))
    monkeypatch.undo()
    # A staging directory left by a killed export (a pid that no longer runs) is removed by the next one.
    stale = tmp_path / "serving" / ".1.tmp-999999999-abc"
    stale.mkdir()
    export_saved_model(ctc, tmp_path / "serving", version=1, overwrite=True, signatures=["serve"])
    assert sorted(os.listdir(tmp_path / "serving")) == ["1"]
