"""The shared model test harness: the checks every model class must pass, written once (as keras-hub's
`TestCase.run_backbone_test` / `run_model_saving_test`) and run for each class by the test files:

- `run_config_round_trip`: get_config / from_config gives the same config and, with the same weights,
  the same outputs.
- `run_save_pretrained_round_trip`: save_pretrained / from_pretrained, identical outputs.
- `run_keras_file_round_trip`: `.keras` save / `keras.saving.load_model` (no custom_objects), identical.
- `run_weights_file_round_trip`: `save_weights` / `load_weights` (.weights.h5) into a new model, identical.
- `run_variable_length`: two lengths through one traced `tf.function` (one trace), each equal to eager.
- `run_predict`: `predict()` equals the direct call.
- `run_fit_one_step`: `fit()` on a `tf.data` dataset, one step: finite loss, weights updated.
- `run_mixed_precision`: under a mixed policy every layer computes in half precision with float32
  variables, and the outputs are finite.

Every check takes a `ModelCase` (which class, a tiny config, how to make its inputs and labels); `CASES`
holds one per model class. Outputs compared are the case's `output` key. Example (a test file):

    @pytest.mark.parametrize("case, check", harness.params(["TFHubertForCTC"], harness.ROUND_TRIPS + harness.RUNS))
    def test_harness(case, check, tmp_path):
        check(harness.CASES[case], tmp_path)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import hubert_tf
from hubert_tf import HubertConfig

# Deterministic audio at a tiny frame rate: 80 samples per frame (conv strides 5, 4, 4).
TINY = dict(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24, vocab_size=12,
    conv_dim=(8, 8, 16), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
)
SAMPLES = (1600, 2650)  # the two lengths of the variable-length check; the first is the default


def frames_for(config, samples: int) -> int:
    """Output frames of the conv stack for `samples` samples (the reference's length formula)."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        samples = (samples - kernel) // stride + 1
    return samples


@dataclasses.dataclass
class ModelCase:
    """One model class as the harness drives it.

    Args:
        cls: the model class.
        config: a tiny HubertConfig.
        output: the output key compared between runs ("logits", "last_hidden_state").
        labels: (config, batch, frames, rng) -> labels for `fit()`, or None (a compiled Keras loss is used).
        fixed_mask: the model draws a random time mask at every call (pretraining): feed a fixed
            `mask_time_indices` so that outputs are comparable.
    """

    cls: type
    config: HubertConfig
    output: str
    labels: Callable | None = None
    fixed_mask: bool = False

    @property
    def name(self) -> str:
        return self.cls.__name__

    def build(self, **kwargs):
        """A new model (seeded weights)."""
        keras.utils.set_random_seed(0)
        return self.cls(self.config, **kwargs)

    def shared(self):
        """One float32 model per case, built once, for the checks that do not change it."""
        if getattr(self, "_shared", None) is None:
            self._shared = self.build()
        return self._shared

    def inputs(self, batch=2, samples=SAMPLES[0], seed=0, padded=True):
        """A dict of numpy inputs: audio, an attention mask (the last row padded to 3/4 when `padded`)
        and, for `fixed_mask` cases, `mask_time_indices`."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch, samples)).astype("float32")
        mask = np.ones((batch, samples), "int32")
        if padded and batch > 1:
            mask[-1, samples * 3 // 4:] = 0
            x[mask == 0] = 0.0
        inputs = {"input_values": x, "attention_mask": mask}
        if self.fixed_mask:
            inputs["mask_time_indices"] = rng.random((batch, frames_for(self.config, samples))) < 0.5
        return inputs

    def make_labels(self, batch=2, samples=SAMPLES[0], seed=0):
        return self.labels(self.config, batch, frames_for(self.config, samples), np.random.default_rng(seed + 1))


def output_of(out, key):
    return (out[key] if isinstance(out, dict) else getattr(out, key)).numpy()


CASES = {
    case.name: case for case in (
        ModelCase(hubert_tf.TFHubertModel, HubertConfig(**TINY), "last_hidden_state"),
        ModelCase(hubert_tf.TFHubertForCTC, HubertConfig(**TINY), "logits",
                  labels=lambda c, b, f, rng: rng.integers(1, c.vocab_size, (b, 4)).astype("int32")),
        ModelCase(hubert_tf.TFHubertForSequenceClassification,
                  HubertConfig(**TINY, num_labels=3, classifier_proj_size=8, use_weighted_layer_sum=True),
                  "logits", labels=lambda c, b, f, rng: rng.integers(0, c.num_labels, (b,)).astype("int32")),
        ModelCase(hubert_tf.TFHubertForPreTraining, HubertConfig(**TINY, num_clusters=5, final_dim=8), "logits",
                  labels=lambda c, b, f, rng: rng.integers(0, 5, (b, f)).astype("int32"), fixed_mask=True),
        # wav2vec 2.0 (the same layers; tests/test_wav2vec2.py): large-style with MMS attention adapters.
        ModelCase(hubert_tf.TFWav2Vec2ForCTC,
                  hubert_tf.Wav2Vec2Config(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True,
                                           conv_bias=True, adapter_attn_dim=4), "logits",
                  labels=lambda c, b, f, rng: rng.integers(1, c.vocab_size, (b, 4)).astype("int32")),
    )
}


# ----------------------------------------------------------------------------- round trips
def run_config_round_trip(case: ModelCase, tmp_path=None):
    """get_config -> from_config: the same HubertConfig, the same weight shapes, and with the weights
    copied, identical outputs."""
    model = case.shared()
    clone = case.cls.from_config(model.get_config())
    assert type(clone) is case.cls and clone.config == model.config, case.name
    assert [v.shape for v in clone.weights] == [v.shape for v in model.weights], case.name
    clone.set_weights(model.get_weights())
    inputs = case.inputs()
    np.testing.assert_array_equal(output_of(clone(inputs), case.output), output_of(model(inputs), case.output),
                                  err_msg=f"{case.name}: from_config")


def run_save_pretrained_round_trip(case: ModelCase, tmp_path):
    """save_pretrained -> from_pretrained (config.json + model.safetensors): identical outputs."""
    model = case.shared()
    path = os.path.join(str(tmp_path), f"{case.name}_pretrained")
    model.save_pretrained(path)
    assert {"config.json", "model.safetensors"} <= set(os.listdir(path)), os.listdir(path)
    reloaded = case.cls.from_pretrained(path)
    written, read = model.config.to_dict(), reloaded.config.to_dict()
    read.pop("architectures", None)  # save_pretrained records the class, as transformers does
    written.pop("architectures", None)
    assert type(reloaded) is case.cls and read == written, case.name
    inputs = case.inputs()
    np.testing.assert_array_equal(output_of(reloaded(inputs), case.output), output_of(model(inputs), case.output),
                                  err_msg=f"{case.name}: save_pretrained round trip")


def run_keras_file_round_trip(case: ModelCase, tmp_path):
    """model.save(.keras) -> keras.saving.load_model without custom_objects: the same class and config,
    identical outputs on another length than any seen before saving."""
    model = case.shared()
    inputs = case.inputs(samples=SAMPLES[1])
    expected = output_of(model(inputs), case.output)
    path = os.path.join(str(tmp_path), f"{case.name}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is case.cls and reloaded.config == model.config, case.name
    np.testing.assert_array_equal(output_of(reloaded(inputs), case.output), expected,
                                  err_msg=f"{case.name}: .keras round trip")


def run_weights_file_round_trip(case: ModelCase, tmp_path):
    """save_weights(.weights.h5) -> a new model's load_weights: every variable and the outputs identical."""
    model = case.shared()
    path = os.path.join(str(tmp_path), f"{case.name}.weights.h5")
    model.save_weights(path)
    keras.utils.set_random_seed(1)  # a differently initialised model
    other = case.cls(case.config)
    other.load_weights(path)
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{case.name}: {a.path}")
    inputs = case.inputs()
    np.testing.assert_array_equal(output_of(other(inputs), case.output), output_of(model(inputs), case.output))


ROUND_TRIPS = (run_config_round_trip, run_save_pretrained_round_trip, run_keras_file_round_trip,
               run_weights_file_round_trip)


# ----------------------------------------------------------------------------- running
def run_variable_length(case: ModelCase, tmp_path=None):
    """One `tf.function` with unknown batch and length serves two lengths with a single trace; each
    result equals the eager call (1e-5) and has the conv formula's number of frames."""
    model = case.shared()
    traces = []
    signature = {"input_values": tf.TensorSpec([None, None], tf.float32),
                 "attention_mask": tf.TensorSpec([None, None], tf.int32)}
    if case.fixed_mask:
        signature["mask_time_indices"] = tf.TensorSpec([None, None], tf.bool)

    @tf.function(input_signature=[signature])
    def infer(inputs):
        traces.append(1)
        return model(inputs)[case.output]

    for samples in SAMPLES:
        inputs = case.inputs(samples=samples)
        got = infer({k: tf.constant(v) for k, v in inputs.items()}).numpy()
        if case.output != "logits" or got.ndim == 3:
            assert got.shape[1] == frames_for(case.config, samples), (case.name, samples, got.shape)
        np.testing.assert_allclose(got, output_of(model(inputs), case.output), atol=1e-5,
                                   err_msg=f"{case.name}: {samples} samples in tf.function")
    assert len(traces) == 1, f"{case.name}: {len(traces)} traces for {len(SAMPLES)} lengths"


def run_predict(case: ModelCase, tmp_path=None):
    """predict() (batches of 2 over 4 examples) equals the direct call (1e-5), without a `loss` key."""
    model = case.shared()
    inputs = case.inputs(batch=4)
    predicted = model.predict(inputs, batch_size=2, verbose=0)
    assert "loss" not in predicted, case.name
    np.testing.assert_allclose(predicted[case.output], output_of(model(inputs), case.output), atol=1e-5,
                               err_msg=f"{case.name}: predict")


def run_fit_one_step(case: ModelCase, tmp_path=None, dtype=None, steps=1):
    """fit() on a tf.data dataset of (inputs, labels) for one step: a finite loss and updated weights.
    A case without labels (the bare model) trains its `output` towards zeros with a compiled MSE loss.

    Args:
        dtype: a mixed precision policy name for the model (None: float32).
        steps: steps of the one epoch (mixed_float16 needs a few: Keras' loss scaling skips the steps
            whose scaled gradients overflow, halving the scale each time).
    """
    model = case.build(**({} if dtype is None else {"dtype": dtype}))
    inputs = case.inputs(batch=2)
    if case.labels is not None:
        dataset = tf.data.Dataset.from_tensor_slices((inputs, case.make_labels(batch=2))).batch(2).repeat()
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    else:
        target = np.zeros_like(output_of(model(inputs), case.output))
        dataset = tf.data.Dataset.from_tensor_slices((inputs, {case.output: target})).batch(2).repeat()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={case.output: "mse"})
    if dtype == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer), case.name
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 1 and np.isfinite(losses[0]), f"{case.name}: losses {losses}"
    changed = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    assert changed > len(before) // 2, f"{case.name}: fit changed only {changed} of {len(before)} variables"
    assert all(np.all(np.isfinite(v.numpy())) for v in model.weights), f"{case.name}: non-finite weights"
    return model, losses[0]


def assert_policy_everywhere(model, policy):
    """Every layer has the policy, every variable is float32, and the weight-norm and channel-norm
    variables are read in float32 (not autocast to half precision)."""
    wrong = [layer.name for layer in model._flatten_layers() if layer.dtype_policy.name != policy]
    assert not wrong, f"layers without the {policy} policy: {wrong}"
    assert {v.dtype for v in model.weights} == {"float32"}
    conv = model.hubert.encoder.pos_conv_embed.conv
    norm = model.hubert.feature_extractor.conv_layers[0].layer_norm
    float32_reads = [getattr(conv, name) for name in ("weight_v", "weight_g") if conv.weight_norm]
    if model.config.feat_extract_norm == "group":
        float32_reads += [norm.gamma, norm.beta]
    assert not any(v._autocast for v in float32_reads)


def run_mixed_precision(case: ModelCase, tmp_path=None, policy="mixed_bfloat16"):
    """A model built with `dtype=policy`: the policy reaches every layer, variables stay float32, and the
    outputs (with a loss when the case has labels) are finite; logits and losses come out in float32."""
    model = case.build(dtype=policy)
    assert_policy_everywhere(model, policy)
    inputs = case.inputs()
    if case.labels is not None:
        inputs["labels"] = case.make_labels()
    out = model(inputs)
    value = out[case.output]
    assert np.all(np.isfinite(value.numpy().astype("float32"))), f"{case.name} under {policy}: non-finite"
    if case.output == "logits":
        assert value.dtype == tf.float32, f"{case.name}: logits in {value.dtype}"
    if case.labels is not None:
        assert out["loss"].dtype == tf.float32 and np.isfinite(float(out["loss"])), case.name


RUNS = (run_variable_length, run_predict, run_fit_one_step)

# Checks that fail today because of a library bug, with the reason: run as strict xfails, so that the fix
# shows up as an XPASS failure and the entry is removed.
KNOWN_FAILURES: dict = {}


def params(case_names, checks):
    """pytest parameters (case name, check) for `@pytest.mark.parametrize("case, check", ...)`, with ids
    "<class>-<check>" and the KNOWN_FAILURES as strict xfails."""
    import pytest

    out = []
    for name in case_names:
        for check in checks:
            reason = KNOWN_FAILURES.get((name, check.__name__))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(name, check, marks=marks, id=f"{name}-{check.__name__[len('run_'):]}"))
    return out


# ----------------------------------------------------------------------------- gradients
def assert_gradients_match(what, pairs, reference_grads, rtol=1e-3, atol=1e-6):
    """Our gradients against reference (torch) ones, per tensor:
    max |ours - reference| <= rtol * max |reference| + atol * max(1, G), G the largest reference gradient
    (the absolute term covers gradients that are exactly zero in theory, such as the attention key
    biases, softmax ignoring a constant added to every key: both sides hold rounding noise).

    Args:
        what: a label for messages.
        pairs: [(hubert_tf.checkpoints.names Entry, our gradient in the reference layout or None)].
        reference_grads: {reference key: gradient}.
    Returns:
        The worst relative error over the tensors whose gradient is above the noise.
    """
    assert reference_grads, f"{what}: the fixture holds no gradients"
    matched, worst = set(), 0.0
    atol = atol * max(1.0, max(float(np.max(np.abs(g))) for g in reference_grads.values()))
    for entry, grad in pairs:
        key = next((k for k in entry.keys if k in reference_grads), None)
        if key is None:
            # No reference gradient: a buffer (batch-norm statistics) or a weight the loss does not reach
            # (masked_spec_embed without masking); ours must be absent or zero too.
            assert not entry.variable.trainable or grad is None or not np.any(grad), \
                f"{what}: {entry.keys[0]} has a gradient but the reference has none"
            continue
        expected = reference_grads[key]
        if grad is None:
            # A weight our graph does not use where it cancels exactly (the conv bias before the folded
            # group norm: the norm subtracts it again); the reference's gradient is rounding noise then.
            grad = np.zeros_like(expected)
        assert grad.shape == expected.shape, f"{what}: {key} gradient shape {grad.shape} != {expected.shape}"
        scale = float(np.max(np.abs(expected)))
        diff = float(np.max(np.abs(grad.astype(np.float64) - expected)))
        assert diff <= rtol * scale + atol, f"{what}: {key}: max |diff| {diff:.3g} vs max |ref| {scale:.3g}"
        if scale > 10 * atol:  # the relative error of zero gradients is noise
            worst = max(worst, diff / scale)
        matched.add(key)
    missing = set(reference_grads) - matched
    assert not missing, f"{what}: reference gradients without a weight of ours: {sorted(missing)}"
    print(f"{what}: {len(matched)} gradients, max relative error {worst:.2e}")
    return worst
