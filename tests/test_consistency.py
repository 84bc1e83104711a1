"""One path through the model: every surface gives the same per-row numbers.

For a group-norm (base-style) and a layer-norm (large-style) fixture, one padded batch of three
different lengths goes through the model call with `exact_padding=True`, the compiled inference
function, `transcribe` / `extract_features`, `units`, the SavedModel signatures and TFLite (row by row);
every row must equal that row run alone through a plain model call (the reference's numbers) within
ATOL.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES, fixture_dir
from hubert_tf import TFHubertForCTC, extract_features, transcribe
from hubert_tf.export import export_saved_model, tflite_interpreter, to_tflite
from hubert_tf.modeling.inference import inference_function
from hubert_tf.processing import HubertProcessor
from hubert_tf.processing.normalize import normalize
from hubert_tf.units import extract_layer_features

ATOL = 1e-5
RATE = 16000
LENGTHS = (7200, 16000, 27200)  # 0.45 s, 1 s, 1.7 s


def raw_audio(n, seed):
    """Noise bursts of varying loudness with an offset: not normalised, so normalisation matters."""
    rng = np.random.default_rng(seed)
    envelope = np.repeat(rng.uniform(0.0, 2.0, size=n // 800 + 1), 800)[:n]
    return (0.3 * rng.standard_normal(n) * envelope + 0.05).astype(np.float32)


@pytest.fixture(scope="module", params=["base_style", "large_style"])
def case(request, tmp_path_factory):
    """The model, its processor, the raw rows, their normalised padded batch, and each row's reference
    outputs run alone."""
    model = TFHubertForCTC.from_pretrained(fixture_dir(request.param))
    processor = HubertProcessor.from_pretrained(os.path.join(FIXTURES, "processing", "hub_files"))
    raws = [raw_audio(n, i) for i, n in enumerate(LENGTHS)]
    rows = [normalize(r) for r in raws]
    width = max(LENGTHS)
    x = np.zeros((3, width), np.float32)
    mask = np.zeros((3, width), np.int32)
    for i, row in enumerate(rows):
        x[i, :row.size], mask[i, :row.size] = row, 1
    alone = [model(row[None], output_hidden_states=True) for row in rows]
    frames = [int(model.hubert.frame_lengths(n)) for n in LENGTHS]
    reference = {
        "logits": [a.logits.numpy()[0] for a in alone],
        "hidden": [[h.numpy()[0] for h in a.hidden_states] for a in alone],
    }
    return dict(name=request.param, model=model, processor=processor, raws=raws, rows=rows, x=x, mask=mask,
                frames=frames, reference=reference, tmp=tmp_path_factory.mktemp(request.param))


def assert_rows(case, batch, key, what, layer=None):
    """Row i of `batch` [3, frames, dim], cut to its valid frames, equals row i alone."""
    for i, n in enumerate(case["frames"]):
        want = case["reference"][key][i] if layer is None else case["reference"][key][i][layer]
        got = np.asarray(batch[i])[:n]
        assert got.shape == want.shape, f"{what}, row {i}: shape {got.shape} != {want.shape}"
        diff = float(np.max(np.abs(got - want)))
        assert diff <= ATOL, f"{case['name']} {what}, row {i}: max abs difference {diff:.3g} > {ATOL}"


def test_model_call_with_exact_padding(case):
    model = case["model"]
    out = model(case["x"], attention_mask=case["mask"], exact_padding=True, output_hidden_states=True)
    assert_rows(case, out.logits.numpy(), "logits", "model(exact_padding=True).logits")
    for layer in range(model.config.num_hidden_layers + 1):
        assert_rows(case, out.hidden_states[layer].numpy(), "hidden", f"hidden_states[{layer}]", layer)
    # output_layers returns the same arrays for the layers asked, and only those.
    some = model(case["x"], attention_mask=case["mask"], exact_padding=True, output_layers=[1, -1]).hidden_states
    assert len(some) == 2
    assert_rows(case, some[0].numpy(), "hidden", "output_layers=[1, -1][0]", 1)
    assert_rows(case, some[1].numpy(), "hidden", "output_layers=[1, -1][1]", model.config.num_hidden_layers)


def test_the_reference_padding_differs_for_group_norm(case):
    """Without exact_padding a padded batch keeps the reference's numbers, which for a group-norm model
    let the padding into the statistics: the matrix above is not vacuous."""
    logits = case["model"](case["x"], attention_mask=case["mask"]).logits.numpy()
    n = case["frames"][0]
    diff = float(np.max(np.abs(logits[0, :n] - case["reference"]["logits"][0])))
    if case["name"] == "base_style":
        assert diff > 1e-3, f"expected the reference's padded group norm to differ, got {diff:.3g}"
    else:
        assert diff <= ATOL


def test_inference_function(case):
    model = case["model"]
    fn = inference_function(model, exact_padding=True, output_hidden_states=True)
    out = fn(case["x"], case["mask"])
    assert_rows(case, out["logits"].numpy(), "logits", "inference_function")
    body = inference_function(model.hubert, exact_padding=True, output_layers=[1])
    assert_rows(case, body(case["x"], case["mask"])["hidden_states"][0].numpy(), "hidden", "body fn, layer 1", 1)


def test_pipelines_and_units(case):
    """`transcribe` and `extract_features` (batched together), and `units`, on the raw rows."""
    model, processor = case["model"], case["processor"]
    texts = transcribe([(r, RATE) for r in case["raws"]], model, processor=processor, batch_size=3)
    for i, text in enumerate(texts):
        assert text["text"] == processor.batch_decode(case["reference"]["logits"][i][None].argmax(-1))[0]
    last = model.config.num_hidden_layers
    features = extract_features([(r, RATE) for r in case["raws"]], model, processor=processor, layer=[1, last],
                                batch_size=3)
    for layer in (1, last):
        assert_rows(case, [f[layer] for f in features], "hidden", f"extract_features layer {layer}", layer)
    units_features = extract_layer_features(model, case["raws"], 1, processor=processor)
    assert_rows(case, units_features, "hidden", "units features layer 1", 1)


def test_saved_model_signatures(case):
    model = case["model"]
    path = export_saved_model(model, case["tmp"] / "saved", processor=case["processor"],
                              signatures=["serving_default", "transcribe_padded"])
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    for i, row in enumerate(case["rows"]):  # the reference-numbers signature, one row per request
        got = serve(input_values=tf.constant(row[None]), attention_mask=tf.ones([1, row.size], tf.int32))["logits"]
        assert_rows({**case, "frames": [case["frames"][i]], "reference": {"logits": [case["reference"]["logits"][i]]}},
                    got.numpy(), "logits", f"serving_default row {i}")
    raw = np.zeros_like(case["x"])
    for i, r in enumerate(case["raws"]):
        raw[i, :r.size] = r
    out = loaded.signatures["transcribe_padded"](audio=tf.constant(raw), attention_mask=tf.constant(case["mask"]))
    for i, n in enumerate(case["frames"]):
        np.testing.assert_array_equal(out["token_ids"].numpy()[i, :n], case["reference"]["logits"][i].argmax(-1))
    assert out["frame_lengths"].numpy().tolist() == case["frames"]


def test_tflite_row_by_row(case):
    path = to_tflite(case["model"], case["tmp"] / "model.tflite")
    runner = tflite_interpreter(path).get_signature_runner()
    for i, row in enumerate(case["rows"]):
        got = runner(input_values=row[None])["logits"]
        want = case["reference"]["logits"][i]
        diff = float(np.max(np.abs(got[0] - want)))
        assert got.shape[1:] == want.shape and diff <= ATOL, f"TFLite row {i}: {diff:.3g}"
