"""Parity with the reference PyTorch implementation (transformers.HubertModel / HubertForCTC) on tiny
random checkpoints: every hidden state, last_hidden_state, attentions, logits (max abs diff <= 1e-4)
and the CTC loss (relative <= 1e-4), on a padded batch and on an unpadded single example.

The geometry_* cases have other conv stacks than the rest (kernel > 2 * stride, four layers, conv bias
before a group norm, non-GELU activations): together they reach every branch of the feature encoder's
`TFHubertConvLayer.call` (which one each reaches: "covers" in their SOURCE.json)."""

import numpy as np
import pytest

import hubert_tf
from conftest import MODEL_CASES, assert_close, fixture_dir, reference, reference_class

GEOMETRY_CASES = ("geometry_group_bias", "geometry_group_wide", "geometry_layer")
CASES = MODEL_CASES + GEOMETRY_CASES
ATOL = 1e-4
RTOL_LOSS = 1e-4

_models = {}


def load(case):
    if case not in _models:
        cls = getattr(hubert_tf, "TF" + reference_class(case))
        _models[case] = cls.from_pretrained(fixture_dir(case))
    return _models[case]


def run(model, ref, tag, **kwargs):
    inputs = {"input_values": ref[f"{tag}_input_values"]}
    if f"{tag}_attention_mask" in ref:
        inputs["attention_mask"] = ref[f"{tag}_attention_mask"]
    return model(inputs, output_hidden_states=True, output_attentions=True, **kwargs)


@pytest.mark.parametrize("tag", ["batch", "single"])
@pytest.mark.parametrize("case", CASES)
def test_outputs_match_reference(case, tag):
    model, ref = load(case), reference(case)
    out = run(model, ref, tag)
    hidden = out.hidden_states
    n_hidden = len([k for k in ref if k.startswith(f"{tag}_hidden_states_")])
    assert len(hidden) == model.config.num_hidden_layers + 1 == n_hidden
    diffs = {"hidden_states": 0.0}
    for i, h in enumerate(hidden):
        diffs["hidden_states"] = max(diffs["hidden_states"], assert_close(
            h, ref[f"{tag}_hidden_states_{i}"], ATOL, f"{case} {tag} hidden_states[{i}]"))
    diffs["last_hidden_state"] = assert_close(out.last_hidden_state if "last_hidden_state" in out else hidden[-1],
                                              ref[f"{tag}_last_hidden_state"], ATOL, f"{case} {tag} last_hidden_state")
    np.testing.assert_array_equal(hidden[-1], out.get("last_hidden_state", hidden[-1]))
    for i, a in enumerate(out.attentions):
        assert_close(a, ref[f"{tag}_attentions_{i}"], ATOL, f"{case} {tag} attentions[{i}]")
    if f"{tag}_logits" in ref:
        diffs["logits"] = assert_close(out.logits, ref[f"{tag}_logits"], ATOL, f"{case} {tag} logits")
    print(f"{case} {tag}: max abs diff " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


@pytest.mark.parametrize("case", [c for c in CASES if c != "bare_large"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ctc_loss_matches_reference(case, reduction):
    model, ref = load(case), reference(case)
    saved = model.config.ctc_loss_reduction
    model.config.ctc_loss_reduction = reduction
    try:
        loss = float(run(model, ref, "batch", labels=ref["batch_labels"]).loss)
    finally:
        model.config.ctc_loss_reduction = saved
    expected = float(ref[f"batch_loss_{reduction}"])
    print(f"{case} {reduction}: CTC loss {loss:.6f} vs reference {expected:.6f}")
    assert abs(loss - expected) <= RTOL_LOSS * abs(expected), f"{case} {reduction}: {loss} vs {expected}"


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_infeasible_labels(zero_infinity):
    model, ref = load("base_style"), reference("base_style")
    model.config.ctc_zero_infinity = zero_infinity
    try:
        loss = float(model(ref["single_input_values"], labels=ref["infeasible_labels"]).loss)
    finally:
        model.config.ctc_zero_infinity = False
    assert loss == float(ref[f"infeasible_loss_zero_infinity_{int(zero_infinity)}"])


@pytest.mark.parametrize("case", ["large_style", "bare_large", "geometry_layer"])
def test_padded_batch_equals_examples_alone(case):
    """Layer-norm models: each row of a padded batch equals that example run alone (valid frames)."""
    model, ref = load(case), reference(case)
    x, mask = ref["batch_input_values"], ref["batch_attention_mask"]
    batched = run(model, ref, "batch").hidden_states[-1].numpy()
    for i in range(len(x)):
        n = int(mask[i].sum())
        alone = model(x[i:i + 1, :n], output_hidden_states=True).hidden_states[-1].numpy()
        frames = alone.shape[1]
        assert_close(batched[i, :frames], alone[0], ATOL, f"{case} row {i}")
