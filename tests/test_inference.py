"""`hubert_tf.modeling.inference.inference_function`: the compiled fast path gives the model's outputs, is
traced once for every batch size and length, and is cached on the model."""

import numpy as np
import pytest

from conftest import assert_close, fixture_dir, reference
from hubert_tf import TFHubertForCTC, TFHubertModel
from hubert_tf.modeling.inference import inference_function, resolve_jit_compile


@pytest.fixture(scope="module")
def ctc_model():
    return TFHubertForCTC.from_pretrained(fixture_dir("base_style"))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_matches_reference_and_model_call(ctc_model, jit_compile):
    ref = reference("base_style")
    fn = inference_function(ctc_model, jit_compile=jit_compile, output_hidden_states=True)
    out = fn(ref["batch_input_values"], ref["batch_attention_mask"])
    assert_close(out["logits"], ref["batch_logits"], 1e-4, "logits")
    for i, h in enumerate(out["hidden_states"]):
        assert_close(h, ref[f"batch_hidden_states_{i}"], 1e-4, f"hidden_states[{i}]")
    single = fn(ref["single_input_values"])["logits"]
    assert_close(single, ref["single_logits"], 1e-4, "single logits")


def test_one_trace_for_all_shapes(tiny_config):
    model = TFHubertModel(tiny_config)
    fn = inference_function(model, jit_compile=False)
    rng = np.random.default_rng(0)
    for batch, samples in [(1, 1600), (3, 2100), (2, 4000), (1, 777)]:
        x = rng.standard_normal((batch, samples)).astype(np.float32)
        out = fn(x)["last_hidden_state"]
        assert_close(out, model(x).last_hidden_state, 1e-5, f"{batch} x {samples}")
    assert fn.tracing_count == 1
    mask = np.ones((2, 3000), np.int32)
    mask[1, 2000:] = 0
    fn(rng.standard_normal((2, 3000)).astype(np.float32), mask)
    fn(rng.standard_normal((4, 2500)).astype(np.float32), np.ones((4, 2500), np.int64))
    assert fn.tracing_count == 2  # one graph without a mask, one with


def test_cached_per_model_and_setting(tiny_config):
    model = TFHubertModel(tiny_config)
    fn = inference_function(model, jit_compile=False)
    assert inference_function(model, jit_compile=False) is fn
    assert inference_function(model, jit_compile=True) is not fn
    assert inference_function(model, jit_compile=False, output_hidden_states=True) is not fn
    assert inference_function(TFHubertModel(tiny_config), jit_compile=False) is not fn
    assert all(not v.path.startswith("_hubert_tf") for v in model.weights)  # the cache adds no weights


def test_exact_padding(ctc_model):
    """With exact_padding, each padded row equals that row alone (group-norm model included)."""
    rng = np.random.default_rng(1)
    lengths = [4000, 2800]
    x = np.zeros((2, 4000), np.float32)
    mask = np.zeros((2, 4000), np.int32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.standard_normal(n)
        mask[i, :n] = 1
    fn = inference_function(ctc_model, jit_compile=False, exact_padding=True)
    batched = fn(x, mask)["logits"].numpy()
    for i, n in enumerate(lengths):
        alone = fn(x[i:i + 1, :n])["logits"].numpy()[0]
        assert_close(batched[i, : alone.shape[0]], alone, 1e-4, f"row {i}")


def test_auto_and_errors(tiny_config):
    model = TFHubertModel(tiny_config)
    assert isinstance(resolve_jit_compile(model, "auto"), bool)
    with pytest.raises(ValueError, match="jit_compile must be"):
        inference_function(model, jit_compile="yes")
    fn = inference_function(model, jit_compile=False)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        fn(np.zeros(1600, np.float32))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        fn(np.zeros((1, 1600), np.float32), np.ones((1, 1500), np.int32))


@pytest.mark.parametrize("case", ["base_style", "large_style", "batch_norm_pos", "odd_pos_kernel"])
def test_bfloat16_mode_error(case):
    """dtype="bfloat16": every layer computes in bfloat16 (norms, softmax and weight norm in float32
    inside), logits come back float32, and they stay within ~1-2 % (relative RMS) of the float32
    reference; measured 0.7-2.0 % on these fixtures, max abs 0.04-0.16 (see the README)."""
    model = TFHubertForCTC.from_pretrained(fixture_dir(case), dtype="bfloat16")
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"bfloat16"}
    ref = reference(case)
    out = inference_function(model)(ref["batch_input_values"], ref.get("batch_attention_mask"))["logits"].numpy()
    assert out.dtype == np.float32
    expected = ref["batch_logits"]
    rms = np.sqrt(np.mean((out - expected) ** 2) / np.mean(expected ** 2))
    cosine = np.sum(out * expected, -1) / np.linalg.norm(out, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert rms < 0.04, rms
    assert cosine.min() > 0.99, cosine.min()
