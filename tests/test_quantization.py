"""The int8 inference path (`hubert_tf.quantization`): outputs within a stated relative RMS error of the
float32 `inference_function` on the parity fixtures, the same keys and shapes, padded batches as rows
alone, one-line errors for bad inputs, no re-allocation for a repeated shape, one interpreter per model.

Tolerance: relative RMS error <= 5 % of the float32 outputs over the valid frames (the issue's target;
measured ~1-3 % on these fixtures)."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import fixture_dir, reference, reference_class

import hubert_tf
from hubert_tf.modeling.inference import inference_function, tracing_count
from hubert_tf.modeling.masking import conv_output_lengths
from hubert_tf.quantization import quantized_inference_function, relative_rms_error

TOLERANCE = 0.05
# group norm CTC, layer norm CTC, bare layer-norm model (the slow run only: one more conversion)
CASES = ("base_style", "large_style", pytest.param("bare_large", marks=pytest.mark.slow))

_models = {}


def load(case):
    if case not in _models:
        model = getattr(hubert_tf, "TF" + reference_class(case)).from_pretrained(fixture_dir(case))
        _models[case] = model, quantized_inference_function(model)
    return _models[case]


def frames(model, lengths):
    return conv_output_lengths(np.asarray(lengths), model.config.conv_kernel, model.config.conv_stride)


@pytest.mark.parametrize("case", CASES)
def test_matches_float32_single(case):
    model, fn = load(case)
    x = reference(case)["single_input_values"]
    expected = inference_function(model)(x)
    out = fn(x)
    assert set(out) == set(expected) and len(out) == 1
    (name,) = out
    assert out[name].dtype == tf.float32 and out[name].shape == expected[name].shape
    error = relative_rms_error(out[name], expected[name])
    print(f"{case} single: relative RMS error {error:.4f}")
    assert 0 < error <= TOLERANCE, f"{case}: relative RMS error {error:.4f} (int8 weights must differ a little)"


@pytest.mark.parametrize("case", CASES)
def test_padded_batch_rows_as_alone(case):
    """Each row of a padded batch: its valid frames as the row alone (exactly: the same interpreter run),
    within the tolerance of float32 with exact padding, and 0 past them."""
    model, fn = load(case)
    ref = reference(case)
    x, mask = ref["batch_input_values"], ref["batch_attention_mask"]
    lengths = mask.sum(axis=1)
    assert len(set(lengths)) > 1, "the fixture batch must be padded"
    (name,) = fn(x[:1])
    out = fn(x, mask)[name].numpy()
    expected = inference_function(model, exact_padding=True)(x, mask)[name].numpy()
    assert out.shape == expected.shape
    valid = frames(model, lengths)
    error = relative_rms_error(out, expected, valid)
    print(f"{case} batch: relative RMS error {error:.4f}")
    assert error <= TOLERANCE
    for i, n in enumerate(lengths):
        alone = fn(x[i:i + 1, :n])[name].numpy()[0]
        np.testing.assert_allclose(out[i, :valid[i]], alone, rtol=0, atol=1e-6, err_msg=f"{case} row {i}")
        assert not out[i, valid[i]:].any(), f"{case} row {i}: padded frames must be 0"


def test_full_mask_is_the_unmasked_call():
    _, fn = load("large_style")
    x = reference("large_style")["batch_input_values"]
    np.testing.assert_array_equal(fn(x, np.ones(x.shape, "int32"))["logits"], fn(x)["logits"])


def test_classification_padded_batch():
    model = hubert_tf.TFHubertForSequenceClassification.from_pretrained(fixture_dir("cls"))
    fn = quantized_inference_function(model)
    rng = np.random.RandomState(0)
    x = rng.randn(2, 4000).astype("float32")
    mask = np.ones_like(x, "int32")
    mask[1, 3000:] = 0
    out = fn(x, mask)["logits"].numpy()
    assert out.shape == (2, model.config.num_labels)
    np.testing.assert_allclose(out[1], fn(x[1:, :3000])["logits"].numpy()[0], rtol=0, atol=1e-6)
    expected = inference_function(model, exact_padding=True)(x, mask)["logits"].numpy()
    assert relative_rms_error(out, expected) <= TOLERANCE


def test_cached_no_reallocation_for_a_repeated_shape():
    model, fn = load("large_style")
    x = reference("large_style")["single_input_values"]
    assert quantized_inference_function(model) is fn
    assert fn.tracing_count == 1
    fn(x)
    before, traced = fn.allocations, tracing_count(model)
    for _ in range(3):
        fn(x)
    assert fn.allocations == before and tracing_count(model) == traced
    # One interpreter, resized on a change of shape: the memory is bounded whatever the shapes.
    fn(x[:, :3200])
    fn(x)
    assert fn.allocations == before + 2


@pytest.mark.parametrize("inputs, error, match", [
    ((np.zeros(4000, "float32"),), ValueError, r"shape \[batch, samples\]"),
    ((np.zeros((1, 4000), "float32"), np.ones((1, 3000), "int32")), ValueError, "attention_mask has shape"),
    ((np.zeros((1, 4000), "float32"), np.full((1, 4000), 2, "int32")), ValueError, "only 0"),
    ((np.zeros((1, 4000), "float32"), np.concatenate([np.zeros((1, 10), "int32"), np.ones((1, 3990), "int32")], 1)),
     ValueError, "row 0 is not right-padded"),
    ((np.zeros((2, 4000), "float32"), np.stack([np.ones(4000, "int32"), (np.arange(4000) < 50).astype("int32")])),
     ValueError, "row 1 has 50 valid samples, fewer than the minimum of 90"),
    ((np.full((1, 4000), np.nan, "float32"),), ValueError, "NaN"),
    ((np.zeros((1, 50), "float32"),), ValueError, "50 samples, fewer than the minimum of 90"),
    ((np.zeros((1, 0), "float32"),), ValueError, "0 samples, fewer than the minimum of 90"),
    ((np.zeros((0, 4000), "float32"),), ValueError, "empty batch"),
    ((np.array([["a"]]),), TypeError, "float audio"),
    ((np.zeros((1, 4000), "float32"), np.ones((1, 4000), "float32")), TypeError, "attention_mask must be an int"),
])
def test_bad_inputs(inputs, error, match):
    _, fn = load("large_style")
    with pytest.raises(error, match=match):
        fn(*inputs)
    assert fn(np.zeros((1, 4000), "float32"))["logits"].shape[1] > 0  # still usable


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "onnx"}, "method must be one of"),
    ({"num_threads": 0}, "num_threads must be a positive int"),
    ({"num_threads": True}, "num_threads must be a positive int"),
])
def test_bad_arguments(kwargs, match):
    model, _ = load("large_style")
    with pytest.raises(ValueError, match=match):
        quantized_inference_function(model, **kwargs)
