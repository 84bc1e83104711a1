"""Mixed precision: "mixed_bfloat16" and "mixed_float16" policies, given to the model (`dtype=`) or set
globally, reach every layer, keep float32 variables and float32 logits, stay close to the float32
reference, and train with finite losses (mixed_float16 with Keras' automatic loss scaling); every model
class runs under mixed_bfloat16 (the harness's `run_mixed_precision`)."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import harness
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


@pytest.mark.parametrize("case, check", harness.params(list(harness.CASES), [harness.run_mixed_precision]))
def test_every_model_class_runs_in_mixed_bfloat16(case, check):
    check(harness.CASES[case])


@pytest.mark.parametrize("policy", POLICIES)
def test_a_global_policy_reaches_every_layer(global_policy, policy):
    global_policy(policy)
    harness.assert_policy_everywhere(harness.CASES["TFHubertForCTC"].build(), policy)


@pytest.mark.parametrize("policy, how", [("mixed_bfloat16", "dtype_argument"), ("mixed_float16", "global_policy")])
def test_mixed_precision_trains_with_finite_losses(global_policy, policy, how):
    """fit() steps on tf.data with SpecAugment on (time and feature masks), the policy given to the
    model or set globally: every layer takes it, the loss is finite (mixed_float16 with Keras' loss
    scaling) and the weights are updated (`harness.run_fit_one_step`)."""
    case = harness.CASES["TFHubertForCTC"]
    case = dataclasses.replace(case, config=case.config.copy(
        mask_time_prob=0.1, mask_time_length=2, mask_feature_prob=0.2, mask_feature_length=4))
    steps = 16 if policy == "mixed_float16" else 1  # loss scaling skips the first, overflowing steps
    if how == "global_policy":
        global_policy(policy)
        model, loss = harness.run_fit_one_step(case, steps=steps)
    else:
        model, loss = harness.run_fit_one_step(case, dtype=policy, steps=steps)
    harness.assert_policy_everywhere(model, policy)
    print(f"{policy} ({how}): loss {loss}")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", ["base_style", "large_style", "batch_norm_pos"])
def test_mixed_precision_stays_close_to_float32_reference(case, policy):
    ref = reference(case)
    model = TFHubertForCTC.from_pretrained(fixture_dir(case), dtype=policy)
    harness.assert_policy_everywhere(model, policy)
    inputs = {"input_values": ref["batch_input_values"], "attention_mask": ref["batch_attention_mask"]}
    out = model(inputs, labels=ref["batch_labels"])
    assert out.logits.dtype == tf.float32 and out.loss.dtype == tf.float32
    scale = float(np.max(np.abs(ref["batch_logits"])))
    diff = float(np.max(np.abs(out.logits.numpy() - ref["batch_logits"])))
    assert diff <= LOGITS_TOL[policy] * scale, f"{case} {policy}: logits differ by {diff:.3g} (scale {scale:.3g})"
    expected = float(ref[f"batch_loss_{model.config.ctc_loss_reduction}"])
    assert abs(float(out.loss) - expected) <= LOSS_RTOL[policy] * abs(expected)
