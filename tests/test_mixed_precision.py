"""Mixed precision: "mixed_bfloat16" and "mixed_float16" policies, given to the model (`dtype=`) or set
globally, reach every layer, keep float32 variables and float32 logits, stay close to the float32
reference, and train with finite losses (mixed_float16 with Keras' automatic loss scaling)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import fixture_dir, reference
from hubert_tf import TFHubertForCTC

POLICIES = ("mixed_bfloat16", "mixed_float16")
# Max |logits - float32 reference logits| as a fraction of max |reference logits|, and the loss's
# relative error (measured: bf16 2.5% / 0.8%, fp16 0.4% / 0.1%).
LOGITS_TOL = {"mixed_bfloat16": 0.05, "mixed_float16": 0.01}
LOSS_RTOL = {"mixed_bfloat16": 0.02, "mixed_float16": 0.005}


@pytest.fixture
def global_policy():
    """Sets a global dtype policy for one test and always restores the previous one."""
    previous = keras.mixed_precision.global_policy()
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy(previous)


def build(config, policy, how, set_policy):
    keras.utils.set_random_seed(0)
    if how == "dtype_argument":
        return TFHubertForCTC(config, dtype=policy)
    set_policy(policy)
    return TFHubertForCTC(config)


def assert_policy_everywhere(model, policy):
    layers = list(model._flatten_layers())
    wrong = [layer.name for layer in layers if layer.dtype_policy.name != policy]
    assert not wrong, f"layers without the {policy} policy: {wrong}"
    assert {v.dtype for v in model.weights} == {"float32"}
    # Weight normalisation and the channel norm read their float32 values, not half-precision copies.
    conv = model.hubert.encoder.pos_conv_embed.conv
    norm = model.hubert.feature_extractor.conv_layers[0].layer_norm
    float32_reads = [getattr(conv, name) for name in ("weight_v", "weight_g") if conv.weight_norm]
    if model.config.feat_extract_norm == "group":
        float32_reads += [norm.gamma, norm.beta]
    assert not any(v._autocast for v in float32_reads)


@pytest.mark.parametrize("how", ["dtype_argument", "global_policy"])
@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_precision_trains_with_finite_losses(tiny_config, global_policy, policy, how):
    config = tiny_config.copy(mask_time_prob=0.1, mask_time_length=2, mask_feature_prob=0.2, mask_feature_length=4)
    model = build(config, policy, how, global_policy)
    assert_policy_everywhere(model, policy)
    rng = np.random.default_rng(0)
    data = {
        "input_values": rng.standard_normal((8, 3200)).astype("float32"),
        "labels": rng.integers(1, config.vocab_size, (8, 5)).astype("int32"),
    }
    assert model(data).logits.dtype == tf.float32
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = model.lm_head.kernel.numpy().copy()
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(2), epochs=2, verbose=0)
    losses = history.history["loss"]
    print(f"{policy} ({how}): losses {losses}")
    assert np.all(np.isfinite(losses))
    assert not np.array_equal(model.lm_head.kernel.numpy(), before)  # some steps were applied
    assert all(np.all(np.isfinite(v.numpy())) for v in model.weights)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", ["base_style", "large_style", "batch_norm_pos"])
def test_mixed_precision_stays_close_to_float32_reference(case, policy):
    ref = reference(case)
    model = TFHubertForCTC.from_pretrained(fixture_dir(case), dtype=policy)
    assert_policy_everywhere(model, policy)
    inputs = {"input_values": ref["batch_input_values"], "attention_mask": ref["batch_attention_mask"]}
    out = model(inputs, labels=ref["batch_labels"])
    assert out.logits.dtype == tf.float32 and out.loss.dtype == tf.float32
    scale = float(np.max(np.abs(ref["batch_logits"])))
    diff = float(np.max(np.abs(out.logits.numpy() - ref["batch_logits"])))
    assert diff <= LOGITS_TOL[policy] * scale, f"{case} {policy}: logits differ by {diff:.3g} (scale {scale:.3g})"
    expected = float(ref[f"batch_loss_{model.config.ctc_loss_reduction}"])
    assert abs(float(out.loss) - expected) <= LOSS_RTOL[policy] * abs(expected)
