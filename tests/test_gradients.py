"""Gradient parity with the reference PyTorch implementation: d(CTC loss)/d(weight) for every weight of
tiny HubertForCTC checkpoints, on a padded batch in eval mode (no dropout, no masking).

The reduction is the fixture's `grad_reduction` (the case's configured one: "sum" for base_style,
"mean" for large_style).

Tolerance per tensor: max |ours - reference| <= 1e-3 * max |reference| + 1e-6 * max(1, G), G the largest
reference gradient of the model (the absolute term covers the attention key biases, whose exact gradient
is zero, softmax ignoring a constant added to every key: both sides hold rounding noise that grows with
the loss).
"""

import numpy as np
import pytest
import tensorflow as tf

import hubert_tf
from conftest import fixture_dir, reference, reference_class
from hubert_tf.checkpoints.names import reference_entries

CASES = ("base_style", "large_style", "batch_norm_pos", "odd_pos_kernel")
RTOL = 1e-3
ATOL = 1e-6


def our_gradients(case):
    """(model, reference arrays, [(name-table entry, our gradient in the reference layout or None)])."""
    model = getattr(hubert_tf, "TF" + reference_class(case)).from_pretrained(fixture_dir(case))
    ref = reference(case)
    model.config.ctc_loss_reduction = str(ref["grad_reduction"])
    inputs = {"input_values": ref["batch_input_values"], "attention_mask": ref["batch_attention_mask"]}
    entries = list(reference_entries(model))
    with tf.GradientTape() as tape:
        loss = model(inputs, labels=ref["batch_labels"], training=False).loss
    grads = tape.gradient(loss, [entry.variable for entry in entries])
    pairs = [(entry, None if g is None else entry.to_reference(np.asarray(g))) for entry, g in zip(entries, grads)]
    return model, ref, pairs


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_reference(case):
    model, ref, pairs = our_gradients(case)
    reference_grads = {k[len("grad/"):]: ref[k] for k in ref if k.startswith("grad/")}
    assert reference_grads, f"{case}: the fixture holds no gradients"
    matched, worst = set(), 0.0
    atol = ATOL * max(1.0, max(float(np.max(np.abs(g))) for g in reference_grads.values()))
    for entry, grad in pairs:
        key = next((k for k in entry.keys if k in reference_grads), None)
        if key is None:
            # No reference gradient: a buffer (batch-norm statistics) or a weight the loss does not reach
            # in eval mode (masked_spec_embed); ours must be absent or zero too.
            assert not entry.variable.trainable or grad is None or not np.any(grad), \
                f"{case}: {entry.keys[0]} has a gradient but the reference has none"
            continue
        expected = reference_grads[key]
        assert grad is not None, f"{case}: no gradient for {key}"
        assert grad.shape == expected.shape, f"{case}: {key} gradient shape {grad.shape} != {expected.shape}"
        scale = float(np.max(np.abs(expected)))
        diff = float(np.max(np.abs(grad.astype(np.float64) - expected)))
        assert diff <= RTOL * scale + atol, f"{case}: {key}: max |diff| {diff:.3g} vs max |ref| {scale:.3g}"
        if scale > 1e-5:  # the relative error of the zero-gradient key biases is noise
            worst = max(worst, diff / scale)
        matched.add(key)
    missing = set(reference_grads) - matched
    assert not missing, f"{case}: reference gradients without a weight of ours: {sorted(missing)}"
    print(f"{case}: {len(matched)} gradients, max relative error {worst:.2e}")
