"""Serving that stays correct under TF Serving's batching: the lengths signatures (`forward_lengths`,
`transcribe_lengths`, `embed`, `classify`) give every row exactly what it gives alone, whatever the
batcher pads with; warm-up records parse back and replay; the export is readable by other users."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES, fixture_dir
from hubert_tf import TFHubertForCTC, TFHubertForSequenceClassification, TFHubertModel
from hubert_tf.export import export_saved_model
from hubert_tf.processing import HubertProcessor
from hubert_tf.processing.normalize import normalize

ATOL = 1e-5
RATE = 16000
SECONDS = (0.5, 3.0, 30.0)  # one batch: short, medium and the longest single request we document


def raw(seconds, seed):
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = np.repeat(rng.uniform(0.0, 2.0, size=n // 800 + 1), 800)[:n]
    return (0.3 * rng.standard_normal(n) * envelope + 0.05).astype(np.float32)


def batched(rows, fill):
    """What TF Serving's batcher does with `pad_variable_length_inputs`: concatenate single-row
    requests, padding `audio` to the longest with values the model never asked for; lengths are kept."""
    width = max(r.size for r in rows)
    audio = np.full((len(rows), width), fill, np.float32)
    for i, r in enumerate(rows):
        audio[i, :r.size] = r
    return audio, np.array([r.size for r in rows], np.int32)


@pytest.fixture(scope="module")
def processor():
    return HubertProcessor.from_pretrained(os.path.join(FIXTURES, "processing", "hub_files"))


@pytest.fixture(scope="module")
def ctc():
    return TFHubertForCTC.from_pretrained(fixture_dir("base_style"))  # group norm: padding matters


@pytest.fixture(scope="module")
def exported(ctc, processor, tmp_path_factory):
    path = export_saved_model(ctc, tmp_path_factory.mktemp("serving") / "asr", version=3, processor=processor,
                              output_layers=[1], warmup=True, warmup_model_name="asr")
    return path, tf.saved_model.load(path)


@pytest.fixture(scope="module")
def rows():
    return [raw(s, i) for i, s in enumerate(SECONDS)]


@pytest.mark.parametrize("fill", [0.0, 7.5])
def test_forward_and_transcribe_lengths_equal_each_request_alone(ctc, processor, exported, rows, fill):
    _, loaded = exported
    audio, lengths = batched(rows, fill)
    out = loaded.signatures["forward_lengths"](audio=audio, audio_lengths=lengths)
    text = loaded.signatures["transcribe_lengths"](audio=audio, audio_lengths=lengths)
    frames = [int(ctc.hubert.frame_lengths(n)) for n in lengths]
    assert out["frame_lengths"].numpy().tolist() == frames == text["frame_lengths"].numpy().tolist()
    for i, row in enumerate(rows):
        alone = ctc(normalize(row)[None], output_hidden_states=True)
        got = out["logits"].numpy()[i, :frames[i]]
        diff = float(np.max(np.abs(got - alone.logits.numpy()[0])))
        assert diff <= ATOL, f"row {i} ({SECONDS[i]} s), padding {fill}: logits differ by {diff:.3g}"
        layer1 = out["hidden_state_1"].numpy()[i, :frames[i]]
        assert float(np.max(np.abs(layer1 - alone.hidden_states[1].numpy()[0]))) <= ATOL
        expected = processor.batch_decode(alone.logits.numpy().argmax(-1))[0]
        assert text["text"].numpy()[i].decode() == expected
        # The per-request signature agrees with the batched one.
        single = loaded.signatures["transcribe"](audio=row[None])
        assert single["text"].numpy()[0].decode() == expected


def test_masks_do_not_survive_batching_but_lengths_do(exported, rows):
    """The reason for the lengths signatures: padding seen as audio changes the mask-less signature."""
    _, loaded = exported
    audio, lengths = batched(rows[:2], 7.5)
    padded_as_audio = loaded.signatures["transcribe"](audio=audio)["text"].numpy()[0]
    alone = loaded.signatures["transcribe"](audio=rows[0][None])["text"].numpy()[0]
    by_lengths = loaded.signatures["transcribe_lengths"](audio=audio, audio_lengths=lengths)["text"].numpy()[0]
    assert by_lengths == alone != padded_as_audio


def test_embed(ctc, exported, rows):
    _, loaded = exported
    audio, lengths = batched(rows, 0.0)
    out = loaded.signatures["embed"](audio=audio, audio_lengths=lengths)
    assert out["embedding"].shape == (3, ctc.config.hidden_size)
    for i, row in enumerate(rows):
        last = ctc.hubert(normalize(row)[None])["last_hidden_state"].numpy()[0]
        assert float(np.max(np.abs(out["embedding"].numpy()[i] - last.mean(0)))) <= ATOL
        n = int(out["frame_lengths"][i])
        assert float(np.max(np.abs(out["hidden_state_1"].numpy()[i, :n]
                                   - ctc.hubert(normalize(row)[None], output_hidden_states=True)["hidden_states"][1][0]))) <= ATOL


def test_classify_top_labels(tmp_path):
    model = TFHubertForSequenceClassification.from_pretrained(fixture_dir("cls"))
    labels = model.config.id2label
    path = export_saved_model(model, tmp_path / "cls", top_k=2, signatures=["classify"])
    loaded = tf.saved_model.load(path)
    rows = [raw(0.4, 1), raw(0.9, 2)]
    audio, lengths = batched(rows, -3.0)
    out = loaded.signatures["classify"](audio=audio, audio_lengths=lengths)
    scores = out["scores"].numpy()
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-6)
    for i, row in enumerate(rows):
        logits = model(normalize(row)[None]).logits.numpy()[0]
        want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(scores[i], want, atol=ATOL)
        order = np.argsort(-want)[:2]
        assert [t.decode() for t in out["top_labels"].numpy()[i]] == [str(labels[int(j)]) for j in order]
        np.testing.assert_allclose(out["top_scores"].numpy()[i], want[order], atol=ATOL)


def test_lengths_are_checked(exported, rows):
    _, loaded = exported
    audio, lengths = batched(rows[:2], 0.0)
    forward = loaded.signatures["forward_lengths"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceed the samples"):
        forward(audio=audio, audio_lengths=lengths + audio.shape[1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="one entry per row"):
        forward(audio=audio, audio_lengths=lengths[:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least"):
        forward(audio=audio, audio_lengths=np.array([10, 8000], np.int32))


def test_warmup_records_parse_back_and_replay(exported):
    from hubert_tf.serving.warmup import WARMUP_FILE, read_warmup_file

    path, loaded = exported
    logs = read_warmup_file(os.path.join(path, WARMUP_FILE))
    signatures = {log.predict_log.request.model_spec.signature_name for log in logs}
    assert signatures == set(loaded.signatures) - {"serve"}  # "serve" is "serving_default" again
    assert all(log.predict_log.request.model_spec.name == "asr" for log in logs)
    for log in logs:  # replay as TF Serving does: every record runs
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert all(np.isfinite(v.numpy()).all() for v in outputs.values() if v.dtype.is_floating)


def test_bare_model_forward_lengths_keeps_the_last_hidden_state(tmp_path):
    model = TFHubertModel.from_pretrained(fixture_dir("bare_large"))
    loaded = tf.saved_model.load(export_saved_model(model, tmp_path / "bare", output_layers=[0], signatures=["forward_lengths"]))
    row = raw(0.6, 3)
    out = loaded.signatures["forward_lengths"](audio=row[None], audio_lengths=[row.size])
    alone = model(normalize(row)[None], output_hidden_states=True)
    np.testing.assert_allclose(out["last_hidden_state"].numpy()[0], alone.last_hidden_state.numpy()[0], atol=ATOL)
    np.testing.assert_allclose(out["hidden_state_0"].numpy()[0], alone.hidden_states[0].numpy()[0], atol=ATOL)


def test_batching_simulation_without_hubert_tf(exported, rows):
    """The server's view: the SavedModel alone (hubert_tf not importable), requests batched and padded."""
    path, _ = exported
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "hubert_tf":
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        import numpy as np, tensorflow as tf
        m = tf.saved_model.load({path!r})
        rng = np.random.default_rng(0)
        reqs = [rng.standard_normal(n).astype("float32") for n in (8000, 24000, 12345)]
        width = max(r.size for r in reqs)
        batch = np.stack([np.pad(r, (0, width - r.size), constant_values=3.0) for r in reqs])
        together = m.signatures["transcribe_lengths"](audio=batch, audio_lengths=[r.size for r in reqs])["text"]
        alone = [m.signatures["transcribe_lengths"](audio=r[None], audio_lengths=[r.size])["text"][0] for r in reqs]
        print(together.numpy().tolist() == [a.numpy() for a in alone])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_signatures_can_be_chosen(tmp_path):
    model = TFHubertModel.from_pretrained(fixture_dir("bare_large"))
    loaded = tf.saved_model.load(export_saved_model(model, tmp_path / "m", signatures=["embed"]))
    assert set(loaded.signatures) == {"serve", "serving_default", "embed"}
    with pytest.raises(ValueError, match=r"\['transcribe'\] are not available for TFHubertModel without processor="):
        export_saved_model(model, tmp_path / "n", signatures=["transcribe"])
