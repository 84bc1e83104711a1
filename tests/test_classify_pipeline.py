"""`classify`: the transformers `audio-classification` pipeline for the sequence-classification models
(HuBERT and wav2vec2), checked against the PyTorch reference logits of the fixtures and against direct
model calls, long audio chunked with frame-weighted logit averaging, batching, and errors."""

import numpy as np
import pytest

from conftest import fixture_dir, reference
from hubert_tf import (HubertFeatureExtractor, TFHubertForCTC, TFHubertForSequenceClassification,
                       TFWav2Vec2ForSequenceClassification)
from hubert_tf.modeling.inference import tracing_count
from hubert_tf.pipelines import classify, plan_chunks
from hubert_tf.processing.normalize import normalize

RAW = HubertFeatureExtractor(do_normalize=False)  # the fixtures' inputs are already what the model takes


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def as_probs(result, num_labels):
    """{"label", "score"} list -> probabilities by class id (labels are LABEL_<id> in the fixtures)."""
    probs = np.full(num_labels, np.nan)
    for item in result:
        probs[int(item["label"].split("_")[1])] = item["score"]
    return probs


@pytest.fixture(scope="module")
def model():
    return TFHubertForSequenceClassification.from_pretrained(fixture_dir("cls"))


@pytest.mark.parametrize("case, cls", [("cls", TFHubertForSequenceClassification),
                                       ("w2v_cls", TFWav2Vec2ForSequenceClassification)])
def test_scores_are_the_reference_probabilities(case, cls):
    """A directory in, top-k of softmax(PyTorch logits) out, within 1e-5, sorted, labels from id2label."""
    ref = reference(case)
    x = ref["single_input_values"][0]
    expected = softmax(ref["single_logits"][0].astype(np.float64))
    n = expected.size
    result = classify(x, fixture_dir(case), processor=RAW, top_k=n)
    assert [set(r) for r in result] == [{"label", "score"}] * n
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(as_probs(result, n), expected, atol=1e-5)
    model = TFHubertForSequenceClassification.from_pretrained(fixture_dir(case))
    assert type(model) is cls
    assert [r["label"] for r in result] == [model.config.id2label[i] for i in np.argsort(-expected)]


def test_equals_a_direct_model_call_with_the_default_normalisation(model):
    x = reference("cls")["single_input_values"][0] * 3 + 0.2
    direct = softmax(model(normalize(x)[None]).logits.numpy()[0].astype(np.float64))
    np.testing.assert_allclose(as_probs(classify(x, model, top_k=5), 5), direct, atol=1e-5)


def test_a_list_gives_a_list_of_lists_equal_to_one_at_a_time(model):
    ref = reference("cls")
    rows = [r[: int(m.sum())] for r, m in zip(ref["batch_input_values"], ref["batch_attention_mask"])]
    assert len({len(r) for r in rows}) > 1  # different lengths, padded together
    together = classify(rows, model, processor=RAW, top_k=3, batch_size=3)
    assert isinstance(together, list) and len(together) == 3 and all(len(r) == 3 for r in together)
    for row, result in zip(rows, together):
        direct = softmax(model(row[None]).logits.numpy()[0].astype(np.float64))
        top = np.argsort(-direct)[:3]
        assert [r["label"] for r in result] == [f"LABEL_{i}" for i in top]
        np.testing.assert_allclose([r["score"] for r in result], direct[top], atol=1e-5)


def test_long_audio_averages_chunk_logits_by_frames(model):
    """Chunked: softmax of the chunks' logits (each chunk run alone) averaged with weights = its frames."""
    rng = np.random.default_rng(0)
    x = normalize(rng.standard_normal(16000 * 3 + 250).astype(np.float32))
    chunks = plan_chunks(x.size, 0, model.config, 1.0, 0, 16000)
    assert len(chunks) == 4 and chunks[-1].stop - chunks[-1].start < 16000  # a short last chunk
    logits = np.stack([model(x[c.start:c.stop][None]).logits.numpy()[0] for c in chunks]).astype(np.float64)
    frames = np.array([c.keep_stop - c.keep_start for c in chunks], np.float64)
    expected = softmax((logits * frames[:, None]).sum(0) / frames.sum())
    got = classify(x, model, processor=RAW, top_k=5, chunk_length_s=1.0, batch_size=2)
    np.testing.assert_allclose(as_probs(got, 5), expected, atol=1e-5)
    # Chunks side by side are the default; batch size does not change the result.
    again = classify(x, model, processor=RAW, top_k=5, chunk_length_s=1.0, stride_length_s=0, batch_size=1)
    np.testing.assert_allclose(as_probs(again, 5), expected, atol=1e-5)
    # Progress counts every sample once.
    done = []
    classify(x, model, processor=RAW, chunk_length_s=1.0, progress=done.append)
    assert sum(done) == x.size


def test_inputs_of_other_rates_and_one_compiled_graph(model):
    x = reference("cls")["single_input_values"][0]
    base = classify(x, model, processor=RAW)
    assert classify({"raw": x, "sampling_rate": 16000}, model, processor=RAW) == base
    for n in range(3000, 9000, 1000):
        classify(np.resize(x, n), model, processor=RAW)
    assert tracing_count(model) <= 2  # one graph for every length (masked inference function)


def test_top_k_is_capped_and_checked(model):
    x = reference("cls")["single_input_values"][0]
    assert len(classify(x, model, processor=RAW, top_k=99)) == 5
    assert len(classify(x, model, processor=RAW, top_k=1)) == 1
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="top_k must be a positive int"):
            classify(x, model, processor=RAW, top_k=bad)


def test_a_model_without_a_classification_head_is_refused(asr_dir):
    with pytest.raises(ValueError, match="TFHubertForCTC is not an audio-classification model"):
        classify(np.zeros(16000, np.float32), TFHubertForCTC.from_pretrained(asr_dir))
