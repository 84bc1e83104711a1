"""Decoding beyond greedy: confidence scores (definition checked by hand), KenLM beam search turning a
greedy misspelling into words of the LM, hotwords changing the result, n-best scores, the
`Wav2Vec2ProcessorWithLM` file layout, and `transcribe(decoder=...)`.

The LM tests need the optional `lm` extra (flashlight-text, on PyPI as manylinux/macOS wheels); they are
skipped, saying so, where it is not installed."""

import json

import numpy as np
import pytest

from hubert_tf.decoding import greedy_confidence, span_confidence
from hubert_tf.pipelines import _decode
from hubert_tf.processing import HubertCTCTokenizer

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate(LETTERS)}}

# A tiny 2-gram LM written here: "the cat" is likely, "cab" is a rare word.
ARPA = """\\data\\
ngram 1=7
ngram 2=4

\\1-grams:
-1.0\t<unk>\t0
-1.0\t<s>\t-0.3
-0.5\t</s>\t0
-0.6\tthe\t-0.3
-0.9\tcat\t-0.3
-1.5\tcab\t-0.3
-1.2\tsat\t-0.3

\\2-grams:
-0.1\t<s> the
-0.2\tthe cat
-0.2\tcat sat
-0.2\tsat </s>

\\end\\
"""


def emissions(frames):
    """Logits [frames, classes] from per-frame {token: probability} dicts (the rest share 1e-4)."""
    out = np.full((len(frames), len(VOCAB)), 1e-4)
    for t, probs in enumerate(frames):
        for token, p in probs.items():
            out[t, VOCAB[token]] = p
    return np.log(out / out.sum(-1, keepdims=True)).astype(np.float32)


# Greedy reads "THE CAB SAT": the B beats the T by a little at frame 6.
THE_CAB_SAT = [{"T": .9}, {"H": .9}, {"E": .9}, {"|": .9}, {"C": .9}, {"A": .9}, {"B": .55, "T": .4},
               {"<pad>": .9}, {"|": .9}, {"S": .9}, {"A": .9}, {"T": .9}, {"<pad>": .9}]


# ----------------------------------------------------------------------------------------- confidence
def test_span_confidence_is_the_geometric_mean_of_the_path_posteriors():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    path, frame_lp = greedy_confidence(np.log(probs))
    assert path.tolist() == [0, 1, 0, 0]
    got = span_confidence(frame_lp, [0, 1, 0], [2, 4, 4])
    expected = [np.sqrt(0.9 * 0.8), (0.8 * 0.6 * 0.5) ** (1 / 3), (0.9 * 0.8 * 0.6 * 0.5) ** 0.25]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert span_confidence(frame_lp, [2], [2]).tolist() == [0.0]  # an empty span
    with pytest.raises(ValueError, match="spans must lie"):
        span_confidence(frame_lp, [0], [5])


def test_greedy_words_and_chars_get_confidence():
    tokenizer = HubertCTCTokenizer(VOCAB)
    logits = emissions(THE_CAB_SAT)
    path, frame_lp = greedy_confidence(logits)
    words = _decode(tokenizer, path, "word", 0.02, frame_lp)
    assert words["text"] == "THE CAB SAT"
    assert [c["text"] for c in words["chunks"]] == ["THE", "CAB", "SAT"]
    p_main, p_b = 0.9 / (0.9 + 1e-4 * 31), 0.55 / (0.95 + 1e-4 * 30)
    assert words["chunks"][0]["confidence"] == pytest.approx(p_main, abs=1e-4)
    assert words["chunks"][1]["confidence"] == pytest.approx((p_main ** 2 * p_b) ** (1 / 3), abs=1e-4)
    assert 0 < words["confidence"] < 1
    chars = _decode(tokenizer, path, "char", 0.02, frame_lp)["chunks"]
    assert [c["text"] for c in chars][4:7] == ["C", "A", "B"]
    assert chars[6]["confidence"] == pytest.approx(p_b, abs=1e-4)
    # Without timestamps: text and the whole path's confidence only; unchanged without confidence.
    assert set(_decode(tokenizer, path, None, 0.02, frame_lp)) == {"text", "confidence"}
    assert _decode(tokenizer, path, None, 0.02) == {"text": "THE CAB SAT"}


def test_transcribe_return_confidence_on_a_tiny_model(asr_dir):
    from hubert_tf import transcribe

    audio = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    plain = transcribe(audio, asr_dir, return_timestamps="word")
    scored = transcribe(audio, asr_dir, return_timestamps="word", return_confidence=True)
    assert scored["text"] == plain["text"]
    assert [{k: v for k, v in c.items() if k != "confidence"} for c in scored["chunks"]] == plain["chunks"]
    assert all(0 <= c["confidence"] <= 1 for c in scored["chunks"]) and 0 <= scored["confidence"] <= 1


# ----------------------------------------------------------------------------------------- LM beam search
@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    try:  # any ImportError (not installed, or a wheel that fails to load) skips, saying why
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError as e:
        pytest.skip(f'LM beam search needs the lm extra: pip install "hubert_tf[lm]" (flashlight-text): {e}')
    path = tmp_path_factory.mktemp("lm") / "tiny.arpa"
    path.write_text(ARPA)
    return str(path)


@pytest.fixture(scope="module")
def lm_decoder(lm_path):
    from hubert_tf.decoding import BeamSearchDecoderWithLM

    return BeamSearchDecoderWithLM(HubertCTCTokenizer(VOCAB), lm_path, alpha=0.5, beta=1.0, beam_width=20)


def test_lm_turns_a_greedy_misspelling_into_words(lm_decoder):
    logits = emissions(THE_CAB_SAT)
    assert HubertCTCTokenizer(VOCAB).decode(logits.argmax(-1)) == "THE CAB SAT"
    beams = lm_decoder.decode_beams(logits, n_best=2)
    assert beams[0].text == "THE CAT SAT"
    assert beams[1].text == "THE CAB SAT"
    # Acoustics prefer B (0.55 vs 0.4); the LM's "the cat sat" outweighs it.
    assert beams[1].logit_score - beams[0].logit_score == pytest.approx(np.log(0.55 / 0.4), abs=1e-3)
    assert beams[0].lm_score > beams[1].lm_score and beams[0].score > beams[1].score
    for beam in beams:
        assert beam.score == pytest.approx(beam.logit_score + beam.lm_score, abs=1e-4)
    assert [(w["word"], w["start_offset"], w["end_offset"]) for w in beams[0].word_offsets] == [
        ("THE", 0, 3), ("CAT", 4, 7), ("SAT", 9, 12)]
    cat = beams[0].word_offsets[1]["confidence"]
    assert 0 < cat < beams[0].word_offsets[0]["confidence"]  # the T it chose had posterior 0.4


def test_hotwords_change_the_result(lm_decoder):
    logits = emissions(THE_CAB_SAT)
    assert lm_decoder.decode(logits) == "THE CAT SAT"
    assert lm_decoder.decode(logits, hotwords=["cab"], hotword_weight=5.0) == "THE CAB SAT"
    # A hotword the LM does not know becomes a word the search can produce.
    logits = emissions([{"T": .9}, {"H": .9}, {"E": .9}, {"|": .9}, {"C": .5, "K": .45}, {"A": .9},
                        {"T": .9}, {"<pad>": .9}])
    assert lm_decoder.decode(logits) == "THE CAT"
    assert lm_decoder.decode(logits, hotwords=["kat"], hotword_weight=8.0) == "THE KAT"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm_decoder.decode(logits, hotwords=["ça"])


def test_batches_and_bad_inputs(lm_decoder):
    a, b = emissions(THE_CAB_SAT), emissions(THE_CAB_SAT[:8])
    padded = np.zeros((2, a.shape[0], a.shape[1]), np.float32)
    padded[0], padded[1, :8] = a, b
    assert lm_decoder.decode_batch(padded, frame_lengths=[13, 8]) == ["THE CAT SAT", "THE CAT"]
    assert lm_decoder.decode_batch([a, b]) == ["THE CAT SAT", "THE CAT"]
    with pytest.raises(ValueError, match="NaN or infinite"):
        lm_decoder.decode(np.full((3, len(VOCAB)), np.nan, np.float32))
    with pytest.raises(ValueError, match="beam_width must be a positive int"):
        lm_decoder.decode(a, beam_width=0)


def test_processor_with_lm_reads_and_writes_the_transformers_layout(lm_path, tmp_path):
    from hubert_tf.processing import HubertFeatureExtractor, HubertProcessor
    from hubert_tf.processing.processor_with_lm import HubertProcessorWithLM

    base = HubertProcessor(HubertFeatureExtractor(), HubertCTCTokenizer(VOCAB))
    processor = HubertProcessorWithLM.from_processor(base, lm_path, alpha=0.5, beta=1.0)
    processor.save_pretrained(tmp_path)
    lm_dir = tmp_path / "language_model"
    assert sorted(p.name for p in lm_dir.iterdir()) == ["attrs.json", "tiny.arpa", "unigrams.txt"]
    assert json.loads((lm_dir / "attrs.json").read_text()) == {
        "alpha": 0.5, "beta": 1.0, "unk_score_offset": -10.0, "score_boundary": True}
    assert (lm_dir / "unigrams.txt").read_text().split() == ["the", "cat", "cab", "sat"]
    loaded = HubertProcessorWithLM.from_pretrained(tmp_path, beam_width=10)
    assert loaded.decoder.alpha == 0.5 and loaded.decoder.beta == 1.0 and loaded.decoder.beam_width == 10
    assert loaded.decode_logits(emissions(THE_CAB_SAT)) == "THE CAT SAT"
    (lm_dir / "tiny.arpa").unlink()
    with pytest.raises(OSError, match="no KenLM file"):
        HubertProcessorWithLM.from_pretrained(tmp_path)


def test_transcribe_with_an_lm_decoder(tmp_path, lm_path):
    """decoder= on a real (tiny, random) model: runs on the stitched logits of chunked audio and its
    words are LM words.

    The model is seeded: the search lets a word outside the unigram list through at the
    `unk_score_offset` penalty (as pyctcdecode does), and the logits of some random models pay it (one
    seed in twelve gave "CAB CAB CAB C")."""
    import keras
    from conftest import make_asr_dir

    from hubert_tf import TFHubertForCTC, transcribe
    from hubert_tf.processing import HubertProcessor

    keras.utils.set_random_seed(0)
    model_dir = make_asr_dir(tmp_path / "model")
    model, processor = TFHubertForCTC.from_pretrained(model_dir), HubertProcessor.from_pretrained(model_dir)
    audio = np.random.default_rng(1).standard_normal(48000).astype(np.float32) * 0.1
    out = transcribe(audio, model, processor=processor, decoder=lm_path, chunk_length_s=1.0, beam_width=8,
                     return_timestamps="word", return_confidence=True)
    vocabulary = {"THE", "CAT", "CAB", "SAT", "the", "cat", "cab", "sat"}
    assert all(c["text"] in vocabulary and 0 <= c["confidence"] <= 1 for c in out["chunks"])
    assert out["text"] == " ".join(c["text"] for c in out["chunks"])
    greedy = transcribe(audio, model, processor=processor)
    assert transcribe(audio, model, processor=processor, decoder="greedy") == greedy


# ----------------------------------------------------------------------------------------- in the graph
def test_graph_beam_search_scores_are_ctc_log_probabilities():
    """`BeamCTCDecoder` (the `transcribe_beam` signature's search): with a wide beam on a small problem
    each hypothesis' log-probability is the exact CTC probability of its labels (-ctc_loss), best first,
    and the blank (id 0, not TF's last class) is handled."""
    import tensorflow as tf

    from hubert_tf.decoding.graph import BeamCTCDecoder

    tokenizer = HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4})
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 5)).astype(np.float32) * 2
    out = BeamCTCDecoder(tokenizer, 5, beam_width=1024, top_paths=3)(logits, [5, 4])
    log_probs = out["log_probs"].numpy()
    assert (np.diff(log_probs, axis=1) <= 1e-6).all()
    for row, frames in enumerate((5, 4)):
        for k in range(3):
            n = int(out["label_lengths"][row, k])
            labels = out["token_ids"].numpy()[row, k, :n]
            assert 0 not in labels.tolist()
            loss = tf.nn.ctc_loss(labels=tf.constant(labels[None], tf.int32),
                                  logits=tf.constant(logits[row:row + 1, :frames]), label_length=[n],
                                  logit_length=[frames], logits_time_major=False, blank_index=0)
            assert log_probs[row, k] == pytest.approx(-float(loss[0]), abs=1e-3)
            as_path = [i for label in labels for i in (label, 0)]  # a blank after each label
            assert out["text"].numpy()[row, k].decode() == tokenizer.decode(as_path)


def test_transcribe_beam_signature_rows_as_alone(asr_dir):
    """The signature is built only with a processor, and each padded row gives what it gives alone."""
    import tensorflow as tf

    from hubert_tf import TFHubertForCTC
    from hubert_tf.processing import HubertProcessor
    from hubert_tf.serving.signatures import TRANSCRIBE_BEAM, Signatures

    model, processor = TFHubertForCTC.from_pretrained(asr_dir), HubertProcessor.from_pretrained(asr_dir)
    signatures = Signatures(model, processor, beam_width=8, top_paths=2)
    assert TRANSCRIBE_BEAM in signatures.all() and TRANSCRIBE_BEAM not in Signatures(model).all()
    fn = signatures.transcribe_beam()
    rng = np.random.default_rng(2)
    rows = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 9000)]
    audio = np.zeros((2, 16000), np.float32)
    audio[0], audio[1, :9000] = rows
    batch = fn(audio=tf.constant(audio), audio_lengths=tf.constant([16000, 9000]))
    for i, row in enumerate(rows):
        alone = fn(audio=tf.constant(row[None]), audio_lengths=tf.constant([row.size]))
        scores = alone["log_probs"].numpy()[0]
        np.testing.assert_allclose(batch["log_probs"].numpy()[i], scores, atol=1e-3)
        # The random model's beams can nearly tie; their order is only compared where they do not.
        if scores[0] - scores[1] > 1e-3:
            assert batch["text"].numpy()[i, 0] == alone["text"].numpy()[0, 0]
    assert batch["text"].shape == (2, 2) and batch["frame_lengths"].numpy().tolist() == [
        int(model.hubert.frame_lengths(n)) for n in (16000, 9000)]


def test_transcribe_command_with_lm_flags(asr_dir, lm_path, tmp_path, capsys):
    import soundfile as sf

    from hubert_tf import transcribe
    from hubert_tf.cli import main

    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(4).standard_normal(24000).astype(np.float32) * 0.1, 16000)
    argv = ["transcribe", str(wav), "--model", asr_dir, "--quiet", "--lm", lm_path, "--beam-width", "8"]
    assert main(argv + ["--hotword", "cab"]) == 0
    printed = capsys.readouterr().out.strip()
    # The flags reach the library's beam search: the same text as the pipeline with the same options
    # (a random model's words are not all in the lexicon: out-of-vocabulary words are penalised by
    # unk_score_offset, as in pyctcdecode, not forbidden).
    expected = transcribe(str(wav), asr_dir, decoder=lm_path, beam_width=8, hotwords=["cab"])["text"]
    assert printed == expected
    assert main(["transcribe", str(wav), "--model", asr_dir, "--quiet", "--hotword", "cab"]) == 1
    assert "need --lm" in capsys.readouterr().err


def test_processor_with_lm_decodes_logits_like_transformers(lm_path):
    """decode / batch_decode take logits (beam search + LM, transformers' fields) or ids (greedy)."""
    from hubert_tf.processing import HubertFeatureExtractor, HubertProcessor
    from hubert_tf.processing.processor_with_lm import HubertProcessorWithLM

    base = HubertProcessor(HubertFeatureExtractor(), HubertCTCTokenizer(VOCAB))
    processor = HubertProcessorWithLM.from_processor(base, lm_path, alpha=0.5, beta=1.0)
    logits = emissions(THE_CAB_SAT)
    out = processor.decode(logits)
    assert out.text == "THE CAT SAT" and out.logit_score < 0 and [w["word"] for w in out.word_offsets] == [
        "THE", "CAT", "SAT"]
    assert processor.decode(logits, n_best=2).text == ["THE CAT SAT", "THE CAB SAT"]
    batch = processor.batch_decode(np.stack([logits, logits]))
    assert batch.text == ["THE CAT SAT"] * 2 and len(batch.lm_score) == 2
    assert processor.batch_decode(logits[None].argmax(-1)) == ["THE CAB SAT"]  # ids: greedy, unchanged
    assert processor.decode(logits.argmax(-1)) == "THE CAB SAT"


def test_a_doubled_delimiter_in_the_search_path_reads_as_one_space(lm_decoder):
    path = np.array([24, 4, 0, 4, 4, 0, 7, 4, 4, 0, 0, 8])  # T | _ | | _ C | | _ _ D
    assert lm_decoder._single_delimiters(path).tolist() == [24, 4, 0, 0, 0, 0, 7, 4, 4, 0, 0, 8]
