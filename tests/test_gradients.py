"""Gradient parity with the reference PyTorch implementation: d(CTC loss)/d(weight) for every weight of
tiny HubertForCTC checkpoints on a padded batch, in eval mode (tests/fixtures/<case>/reference.npz) and
in training mode (tests/fixtures/training_gradients/<case>.npz, torch `model.train()`).

Training mode is made deterministic on both sides: every dropout probability and layerdrop of the
fixtures is 0 and `apply_spec_augment` is off for the call, so no time or feature mask is drawn although
`mask_time_prob > 0` (`masked_spec_embed` exists and gets no gradient). It still runs other code:
batch norm on the batch statistics (batch_norm_pos) and our feature encoder's matmul-form convolution
(the conv op in eval). The geometry_* cases reach the feature encoder's other branches (see their
SOURCE.json "covers").

The reduction is the case's configured one ("sum" or "mean"; `grad_reduction` / `reduction` in the
fixture).

Tolerance per tensor (`harness.assert_gradients_match`): max |ours - reference| <= 1e-3 * max |reference|
+ 1e-6 * max(1, G), G the largest reference gradient of the model (the absolute term covers the attention
key biases, whose exact gradient is zero, softmax ignoring a constant added to every key: both sides hold
rounding noise that grows with the loss).
"""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import hubert_tf
from conftest import FIXTURES, fixture_dir, reference, reference_class
from harness import assert_gradients_match
from hubert_tf.checkpoints.names import reference_entries

CASES = ("base_style", "large_style", "batch_norm_pos", "odd_pos_kernel",
         "geometry_group_bias", "geometry_group_wide", "geometry_layer")
TRAINING = os.path.join(FIXTURES, "training_gradients")
with open(os.path.join(TRAINING, "SOURCE.json")) as _f:
    TRAINING_CASES = tuple(sorted(json.load(_f)["cases"]))
RTOL_LOSS = 1e-4


def training_reference(case):
    """The training-mode reference of `case`, checked to belong to the fixture's current weights."""
    with open(os.path.join(TRAINING, "SOURCE.json")) as f:
        expected_sha = json.load(f)["cases"][case]["model.safetensors sha256"]
    with open(os.path.join(fixture_dir(case), "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert sha == expected_sha, f"tests/fixtures/{case} changed: rerun tools/make_fixtures.py training_gradients"
    with np.load(os.path.join(TRAINING, f"{case}.npz")) as data:
        return {k: data[k] for k in data.files}


def our_gradients(model, ref, reduction, training):
    """(loss, [(name-table entry, our gradient in the reference layout or None)]) on the fixture's batch."""
    model.config.ctc_loss_reduction = reduction
    inputs = {"input_values": ref["batch_input_values"], "attention_mask": ref["batch_attention_mask"]}
    entries = list(reference_entries(model))
    with tf.GradientTape() as tape:
        loss = model(inputs, labels=ref["batch_labels"], training=training).loss
    grads = tape.gradient(loss, [entry.variable for entry in entries])
    return float(loss), [(e, None if g is None else e.to_reference(np.asarray(g))) for e, g in zip(entries, grads)]


def load(case, **config_overrides):
    return getattr(hubert_tf, "TF" + reference_class(case)).from_pretrained(fixture_dir(case), **config_overrides)


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_reference(case):
    ref = reference(case)
    _, pairs = our_gradients(load(case), ref, str(ref["grad_reduction"]), training=False)
    assert_gradients_match(f"{case} eval", pairs, {k[len("grad/"):]: ref[k] for k in ref if k.startswith("grad/")})


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_training_mode_gradients_match_reference(case):
    ref, expected = reference(case), training_reference(case)
    model = load(case, apply_spec_augment=False)  # as the fixture: no mask drawn in training
    assert model.config.apply_spec_augment is False and model.config.mask_time_prob > 0
    loss, pairs = our_gradients(model, ref, str(expected["reduction"]), training=True)
    want = float(expected["loss"])
    assert abs(loss - want) <= RTOL_LOSS * abs(want), f"{case} training loss {loss} vs reference {want}"
    assert_gradients_match(f"{case} training", pairs,
                           {k[len("grad/"):]: expected[k] for k in expected if k.startswith("grad/")})

