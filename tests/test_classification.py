"""TFHubertForSequenceClassification: parity with the reference HubertForSequenceClassification (logits,
loss; with and without the weighted layer sum; padded batch and single example), the head's training
switches, fit(), and the shared harness (tests/harness.py: round trips, variable length, predict, tf.data
fit)."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hubert_tf.modeling.masking import masked_mean

import harness
from conftest import CLASSIFICATION_CASES, FIXTURES, assert_close, fixture_dir, reference
from hubert_tf import HubertConfig, TFHubertForSequenceClassification

ATOL = 1e-4
RTOL_LOSS = 1e-4
# Reference logits with hidden states in the transformers 4.x convention (tools/fixtures_classification.py).
REFERENCE_4X = os.path.join(FIXTURES, "classification_4x")

_models = {}


def load(case):
    if case not in _models:
        _models[case] = TFHubertForSequenceClassification.from_pretrained(fixture_dir(case))
    return _models[case]


def reference_4x(case):
    """The 4.x-convention reference values of `case`, checked to belong to the fixture's current weights."""
    with open(os.path.join(REFERENCE_4X, "SOURCE.json")) as f:
        expected_sha = json.load(f)["cases"][case]["model.safetensors sha256"]
    with open(os.path.join(fixture_dir(case), "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert sha == expected_sha, f"tests/fixtures/{case} changed: rerun tools/fixtures_classification.py"
    with np.load(os.path.join(REFERENCE_4X, "reference.npz")) as data:
        return {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(case + "/")}


def run(model, ref, tag, **kwargs):
    inputs = {"input_values": ref[f"{tag}_input_values"]}
    if f"{tag}_attention_mask" in ref:
        inputs["attention_mask"] = ref[f"{tag}_attention_mask"]
    return model(inputs, **kwargs)


@pytest.mark.parametrize("tag", ["batch", "single"])
@pytest.mark.parametrize("case", CLASSIFICATION_CASES)
def test_logits_match_reference(case, tag):
    model, ref, expected = load(case), reference(case), reference_4x(case)
    out = run(model, ref, tag, output_hidden_states=True)
    assert out.logits.shape == (ref[f"{tag}_input_values"].shape[0], model.config.num_labels)
    diff = assert_close(out.logits, expected[f"{tag}_logits"], ATOL, f"{case} {tag} logits")
    print(f"{case} {tag}: logits max abs diff {diff:.2e}")
    for i, h in enumerate(out.hidden_states):
        assert_close(h, ref[f"{tag}_hidden_states_{i}"], ATOL, f"{case} {tag} hidden_states[{i}]")


def test_post_ln_logits_equal_the_transformers_fixture():
    """Without the weighted sum (and for post-LN bodies) both hidden-state conventions give the same logits:
    the reference fixture written by transformers 5 itself is matched."""
    model, ref = load("cls"), reference("cls")
    for tag in ("batch", "single"):
        assert_close(run(model, ref, tag).logits, ref[f"{tag}_logits"], ATOL, f"cls {tag} logits")


def test_weighted_sum_uses_the_4x_hidden_states():
    """transformers 5 mixes the pre-LN encoder's last layer *before* its final layer norm (its
    `hidden_states[-1]`), 4.x and hubert_tf the normed `last_hidden_state`: a documented difference, visible
    only for stable-layer-norm bodies with `use_weighted_layer_sum`."""
    model, ref = load("cls_weighted"), reference("cls_weighted")
    logits = run(model, ref, "batch").logits.numpy()
    assert np.abs(logits - ref["batch_logits"]).max() > 1.0  # the 5.x number
    assert_close(logits, reference_4x("cls_weighted")["batch_logits"], ATOL, "4.x logits")


@pytest.mark.parametrize("case", CLASSIFICATION_CASES)
def test_loss_matches_reference(case):
    model, ref, expected = load(case), reference(case), reference_4x(case)
    loss = float(run(model, ref, "batch", labels=ref["batch_labels"]).loss)
    want = float(expected["batch_loss"])
    print(f"{case}: loss {loss:.7f} vs reference {want:.7f} (relative {abs(loss - want) / abs(want):.1e})")
    assert abs(loss - want) <= RTOL_LOSS * abs(want)


def test_layer_weights_load_from_the_checkpoint():
    from hubert_tf.checkpoints.formats.safetensors import read_safetensors

    model = load("cls_weighted")
    state = dict(read_safetensors(os.path.join(fixture_dir("cls_weighted"), "model.safetensors")))
    np.testing.assert_array_equal(model.layer_weights.numpy(), state["layer_weights"])
    assert model.layer_weights.shape == (model.config.num_hidden_layers + 1,)
    assert not hasattr(load("cls"), "layer_weights")


def test_pooling_ignores_padding_and_ignored_labels():
    """Layer-norm body: each row of a padded batch gives the logits of the example alone (the mean runs over
    the valid frames only); -100 labels drop out of the mean cross-entropy."""
    model, ref = load("cls_weighted"), reference("cls_weighted")
    x, mask = ref["batch_input_values"], ref["batch_attention_mask"]
    batched = model({"input_values": x, "attention_mask": mask}).logits.numpy()
    for i in range(len(x)):
        alone = model(x[i:i + 1, :int(mask[i].sum())]).logits.numpy()
        assert_close(batched[i], alone[0], ATOL, f"row {i} alone")
    hidden = np.random.default_rng(0).standard_normal((3, 49, 4)).astype("float32")
    frames = [49, 33, 39]  # conv formula for 4000, 2650, 3203 samples
    lengths = model.hubert.frame_lengths(mask.sum(-1))
    pooled = masked_mean(tf.constant(hidden), tf.sequence_mask(lengths, hidden.shape[1])).numpy()
    np.testing.assert_allclose(pooled, [hidden[i, :n].mean(0) for i, n in enumerate(frames)], atol=1e-6)
    labels = ref["batch_labels"].copy()
    labels[1] = -100
    partial = float(model({"input_values": x, "attention_mask": mask}, labels=labels).loss)
    want = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        ref["batch_labels"][[0, 2]], batched[[0, 2]])))
    assert abs(partial - want) < 1e-5


def test_bad_labels_are_named():
    model, ref = load("cls"), reference("cls")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\) \(num_labels\)"):
        model(ref["single_input_values"], labels=np.array([7]))
    with pytest.raises(ValueError, match="shape \\[batch\\]"):
        model(ref["single_input_values"], labels=np.array([[1, 2]]))


def test_config_labels_and_names():
    config = HubertConfig.from_pretrained(fixture_dir("cls"))
    config.id2label = {i: name for i, name in enumerate(["yes", "no", "up", "down", "left"])}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = TFHubertForSequenceClassification.from_pretrained(fixture_dir("cls"), config=config)
    logits = model(reference("cls")["batch_input_values"]).logits
    assert logits.shape[-1] == 5
    assert model.predict_labels(logits) == [config.id2label[int(i)] for i in np.argmax(logits, -1)]


def _toy_model(weighted):
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        conv_dim=(16, 24, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, num_labels=2, classifier_proj_size=8, use_weighted_layer_sum=weighted,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, final_dropout=0.0,
    )
    return TFHubertForSequenceClassification(config)


def _toy_data(n=16, samples=2000, seed=0):
    """Trivially separable: a low tone (class 0) or a high tone (class 1), random phase, some noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.arange(samples) / 16000
    x = np.stack([0.5 * np.sin(2 * np.pi * (300 if c == 0 else 3000) * t + rng.uniform(0, 6)) for c in y])
    x = (x + 0.05 * rng.standard_normal(x.shape)).astype("float32")
    mask = np.ones_like(x, dtype="int32")
    mask[1::4, samples // 2:] = 0  # some padded rows
    x[mask == 0] = 0.0
    return x, mask, y


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_learns_a_separable_toy_set(weighted):
    keras.utils.set_random_seed(0)
    model = _toy_model(weighted)
    x, mask, y = _toy_data()
    if weighted:  # (inputs, labels) pairs -> loss_from_outputs
        ds = tf.data.Dataset.from_tensor_slices(({"input_values": x, "attention_mask": mask}, y)).batch(8)
    else:  # labels inside the inputs dict -> the model's own loss
        ds = tf.data.Dataset.from_tensor_slices({"input_values": x, "attention_mask": mask, "labels": y}).batch(8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    losses = model.fit(ds, epochs=12, verbose=0).history["loss"]
    print(f"weighted={weighted}: loss per epoch {np.round(losses, 4).tolist()}")
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.3 * losses[0]
    assert max(losses[6:]) < min(losses[:3])  # decreasing, up to small bumps
    accuracy = float(np.mean(np.argmax(model({"input_values": x, "attention_mask": mask}).logits, -1) == y))
    print(f"weighted={weighted}: training accuracy {accuracy}")
    assert accuracy >= 0.9
    if weighted:
        # The layer weights trained (they start uniform).
        assert np.ptp(model.layer_weights.numpy()) > 0


def test_freezing_leaves_only_the_head_trainable():
    model = _toy_model(weighted=True)
    model.freeze_feature_encoder()
    trainable = {v.path.split("/", 1)[1] for v in model.trainable_variables}
    assert not any(p.startswith("hubert/feature_extractor") for p in trainable)
    assert any(p.startswith("hubert/encoder") for p in trainable)
    model.freeze_base_model()
    trainable = sorted(v.path.split("/", 1)[1] for v in model.trainable_variables)
    assert trainable == ["classifier/bias", "classifier/kernel", "layer_weights", "projector/bias", "projector/kernel"]
    # Only the head changes in training.
    x, mask, y = _toy_data(n=8)
    before = [v.numpy().copy() for v in model.hubert.weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit({"input_values": x, "attention_mask": mask}, y, batch_size=8, epochs=1, verbose=0)
    for b, v in zip(before, model.hubert.weights):
        np.testing.assert_array_equal(b, v.numpy())


@pytest.mark.parametrize("case, check", harness.params(["TFHubertForSequenceClassification"],
                                                       harness.ROUND_TRIPS + harness.RUNS))
def test_harness(case, check, tmp_path):
    check(harness.CASES[case], tmp_path)
