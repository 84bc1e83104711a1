"""TFHubertForPreTraining: the fairseq HuBERT objective (loss, logits, accuracies and training-mode
gradients checked against fairseq's loss in torch on the transformers body, recorded at fixture time by
tools/fixtures_pretraining.py), the shared harness, gradient scaling of the conv encoder, label rates,
padding, loading a base checkpoint, and an end-to-end pretraining run on a synthetic corpus with MFCC
k-means targets."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import harness
from conftest import assert_close, fixture_dir, reference
from harness import assert_gradients_match
from hubert_tf import HubertConfig, TFHubertForPreTraining, TFHubertModel
from hubert_tf.checkpoints.names import reference_entries
from hubert_tf.modeling.pretraining import align_labels, masked_prediction_terms

SR = 16000


def tiny(**overrides):
    """A tiny HuBERT with the real conv strides (320 samples per frame, 50 Hz)."""
    fields = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0, num_clusters=7, final_dim=16,
    )
    fields.update(overrides)
    return HubertConfig(**fields)


def fixed_mask(batch, frames, seed=0):
    return np.random.default_rng(seed).random((batch, frames)) < 0.5


# ----------------------------------------------------------------------------- the loss, against fairseq's
# tests/fixtures/pretraining was written by tools/fixtures_pretraining.py: fairseq's HuBERT forward and
# criterion (compute_pred / compute_nce / HubertCriterion, GradMultiply), written in torch from fairseq's
# source, on a transformers HubertModel body with this checkpoint's final_proj and label_embs_concat;
# pred_nomask_weight 0.5, feature_pen_weight 10, feature_grad_mult 0.1; a padded batch of two, a fixed mask.
LOSS_RTOL = 1e-5  # measured 3e-7
LOGITS_ATOL = 1e-4  # logits are cosine / 0.1, up to 10 in size; measured 3e-6
PEN_RTOL = 1e-5


@pytest.fixture(scope="module")
def fairseq_fixture():
    ref = reference("pretraining")
    inputs = {k: ref[k] for k in ("input_values", "attention_mask", "labels", "mask_time_indices")}
    return ref, inputs


def check_fairseq_logits(what, ours, fairseq, labels):
    """ours [S, K] (cosine / temp of every cluster) against fairseq's compute_nce logits [S, 1 + K]:
    column 0 is the positive (the label's cluster), columns 1.. every cluster with the label's set to -inf."""
    rows = np.arange(len(labels))
    assert fairseq.shape == (len(labels), ours.shape[1] + 1), (what, fairseq.shape, ours.shape)
    assert np.all(np.isneginf(fairseq[rows, 1 + labels])), f"{what}: fairseq's duplicate positive is not -inf"
    negatives = fairseq[:, 1:].copy()
    negatives[rows, labels] = fairseq[:, 0]
    return assert_close(ours, negatives, LOGITS_ATOL, f"{what} logits")


def test_loss_and_logits_match_fairseq(fairseq_fixture):
    ref, inputs = fairseq_fixture
    model = TFHubertForPreTraining.from_pretrained(fixture_dir("pretraining"))
    assert (model.pred_masked_weight, model.pred_nomask_weight, model.feature_grad_mult) == (1.0, 0.5, 0.1)
    out = model(inputs)
    np.testing.assert_array_equal(out.mask_time_indices.numpy(), ref["mask_time_indices"])
    assert float(out.features_pen) == pytest.approx(float(ref["features_pen"]), rel=PEN_RTOL)
    logits, labels = out.logits.numpy(), ref["labels"]
    diff_m = check_fairseq_logits("masked", logits[ref["masked"]], ref["logit_m"], labels[ref["masked"]])
    diff_u = check_fairseq_logits("unmasked", logits[ref["unmasked"]], ref["logit_u"], labels[ref["unmasked"]])
    loss, want = float(out.loss), float(ref["loss"])
    print(f"pretraining loss {loss:.7f} vs fairseq {want:.7f} (relative {abs(loss - want) / want:.1e}); "
          f"logits max abs diff masked {diff_m:.1e}, unmasked {diff_u:.1e}")
    assert abs(loss - want) <= LOSS_RTOL * abs(want)
    # Frame counts and accuracies as fairseq's compute_correct.
    lengths = (ref["masked"] | ref["unmasked"]).sum(axis=1)  # fairseq's valid frames per row
    terms = masked_prediction_terms(out.logits, labels, out.mask_time_indices, lengths)
    assert (int(terms["count_masked"]), int(terms["count_unmasked"])) == (int(ref["count_m"]), int(ref["count_u"]))
    assert (int(terms["correct_masked"]), int(terms["correct_unmasked"])) == \
        (int(ref["correct_m"]), int(ref["correct_u"]))
    # Labels on padded frames do not matter.
    padded = ~(ref["masked"] | ref["unmasked"])
    assert padded.any()
    other = dict(inputs, labels=np.where(padded, (labels + 1) % model.num_clusters, labels))
    assert float(model(other).loss) == pytest.approx(loss, rel=1e-6)


def test_loss_without_the_unmasked_term_matches_fairseq(fairseq_fixture):
    """pred_nomask_weight=0 (fairseq's default): the criterion's own combination of the fixture's fairseq
    sums, L_m / n_m + 10 * features_pen."""
    ref, inputs = fairseq_fixture
    model = TFHubertForPreTraining.from_pretrained(fixture_dir("pretraining"), pred_nomask_weight=0.0)
    want = float(ref["loss_m"]) / int(ref["count_m"]) + 10.0 * float(ref["features_pen"])
    assert float(model(inputs).loss) == pytest.approx(want, rel=LOSS_RTOL)


def test_gradients_match_fairseq_in_training_mode(fairseq_fixture):
    """d(loss)/d(weight) of every weight (final_proj, label_embs_concat, masked_spec_embed and the body,
    the conv encoder's scaled by feature_grad_mult) against torch's backward through fairseq's loss, both in
    training mode with dropout 0 and the fixed mask."""
    ref, inputs = fairseq_fixture
    model = TFHubertForPreTraining.from_pretrained(fixture_dir("pretraining"))
    entries = list(reference_entries(model))
    with tf.GradientTape() as tape:
        loss = model(inputs, training=True).loss
    grads = tape.gradient(loss, [e.variable for e in entries])
    assert float(loss) == pytest.approx(float(ref["loss"]), rel=LOSS_RTOL)
    pairs = [(e, None if g is None else e.to_reference(np.asarray(g))) for e, g in zip(entries, grads)]
    assert_gradients_match("pretraining training", pairs,
                           {k[len("grad/"):]: ref[k] for k in ref if k.startswith("grad/")})


@pytest.mark.parametrize("case, check", harness.params(["TFHubertForPreTraining"], harness.ROUND_TRIPS + harness.RUNS))
def test_harness(case, check, tmp_path):
    check(harness.CASES[case], tmp_path)


# ----------------------------------------------------------------------------- training details
def test_feature_grad_mult_scales_only_the_conv_gradients():
    x = np.random.default_rng(0).standard_normal((2, 6400)).astype("float32")
    labels = np.random.default_rng(1).integers(0, 7, (2, 19))
    mask = fixed_mask(2, 19)
    grads = {}
    for mult in (1.0, 0.1):
        keras.utils.set_random_seed(3)
        model = TFHubertForPreTraining(tiny(feature_grad_mult=mult))
        with tf.GradientTape() as tape:
            loss = model({"input_values": x, "labels": labels, "mask_time_indices": mask}).loss
        grads[mult] = {v.path.split("/", 1)[1]: g.numpy() for v, g in
                       zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables))}
        losses = grads.setdefault("loss", [])
        losses.append(float(loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)  # the forward pass is unchanged (up to rounding)
    for name, g in grads[1.0].items():
        if name.endswith("k_proj/bias"):  # mathematically zero (softmax shift invariance): rounding noise
            continue
        scale = 0.1 if name.startswith("hubert/feature_extractor") else 1.0
        np.testing.assert_allclose(grads[0.1][name], scale * g, rtol=1e-3, atol=1e-3 * np.abs(g).max(), err_msg=name)


def test_100hz_labels_are_downsampled():
    keras.utils.set_random_seed(0)
    model_50 = TFHubertForPreTraining(tiny())
    model_100 = TFHubertForPreTraining(tiny(label_rate=100))
    model_100.set_weights(model_50.get_weights())
    x = np.random.default_rng(0).standard_normal((1, 16000)).astype("float32")
    labels_100 = np.random.default_rng(1).integers(0, 7, (1, 98))  # MFCC frames of one second
    mask = fixed_mask(1, 49)
    a = model_100({"input_values": x, "labels": labels_100, "mask_time_indices": mask}).loss
    b = model_50({"input_values": x, "labels": labels_100[:, ::2], "mask_time_indices": mask}).loss
    assert float(a) == float(b)
    np.testing.assert_array_equal(align_labels(labels_100, 49, 100, 50), labels_100[:, 0:98:2])
    # Frames past the labels are ignored (-100), fewer labels than frames is fine.
    np.testing.assert_array_equal(align_labels(labels_100[:, :90], 49, 100, 50)[0, 45:], [-100] * 4)


def test_masking_covers_valid_frames_only():
    keras.utils.set_random_seed(0)
    model = TFHubertForPreTraining(tiny())
    x = np.random.default_rng(0).standard_normal((4, 32000)).astype("float32")
    attention_mask = np.ones_like(x, dtype="int32")
    attention_mask[2:, 16000:] = 0
    mask = model({"input_values": x, "attention_mask": attention_mask}).mask_time_indices.numpy()
    assert mask.shape == (4, 99)
    assert not mask[2:, 49:].any()
    fraction = mask[:2].mean()  # mask_prob 0.8, spans of 10: ~1 - exp(-0.8) of the frames, at least 2 spans
    assert 0.35 < fraction < 0.8, fraction
    assert mask[2:, :49].sum(axis=1).min() >= 10


def test_base_checkpoint_loads_and_the_body_is_hubert():
    """A HubertModel/HubertForCTC checkpoint loads into the pretraining model (new head), whose body, given
    an all-False mask, is exactly TFHubertModel; the head's weights have their fairseq names."""
    model = TFHubertForPreTraining.from_pretrained(fixture_dir("base_style"), num_clusters=5, final_dim=8)
    bare = TFHubertModel.from_pretrained(fixture_dir("base_style"))
    ref = reference("base_style")
    x, attention_mask = ref["batch_input_values"], ref["batch_attention_mask"]
    out = model({"input_values": x, "attention_mask": attention_mask,
                 "mask_time_indices": np.zeros((3, 49), bool)}, output_hidden_states=True)
    want = bare({"input_values": x, "attention_mask": attention_mask}, output_hidden_states=True)
    for i, (a, b) in enumerate(zip(out.hidden_states, want.hidden_states)):
        assert_close(a, b, 1e-5, f"hidden_states[{i}]")
    assert_close(out.hidden_states[-1], ref["batch_last_hidden_state"], 1e-4, "last_hidden_state")
    assert out.logits.shape == (3, 49, 5)
    assert np.abs(out.logits.numpy()).max() <= 1 / 0.1 + 1e-4  # cosine / logit_temp
    keys = {e.keys[0] for e in reference_entries(model)}
    assert {"final_proj.weight", "final_proj.bias", "label_embs_concat", "hubert.masked_spec_embed"} <= keys


def test_settings_and_errors():
    model = TFHubertForPreTraining(tiny())
    settings = (model.final_dim, model.logit_temp, model.feature_pen_weight, model.feature_grad_mult)
    assert settings == (16, 0.1, 10.0, 0.1)
    assert (model.mask_prob, model.mask_length, model.label_rate) == (0.8, 10, 50.0)
    assert model.label_embs_concat.shape == (7, 16)
    with pytest.raises(ValueError, match="mask_time_prob > 0"):
        TFHubertForPreTraining(tiny(mask_time_prob=0.0))
    x = np.zeros((1, 16000), "float32")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 7\) \(num_clusters\)"):
        model(x, labels=np.full((1, 49), 9))
    with pytest.raises(ValueError, match="label_frames"):
        model(x, labels=np.zeros((49,), "int32"))
    # The pretraining fields round-trip through config.json (kept as extra keys).
    assert HubertConfig.from_dict(model.config.to_dict()).num_clusters == 7


# ----------------------------------------------------------------------------- end to end
def synthetic_utterance(rng, seconds=1.0, n_types=5):
    """Tones of 5 "phone" types in segments of 0.2-0.45 s, in a fixed cyclic order from a random start,
    so a masked span can be told from its unmasked neighbours."""
    n = int(SR * seconds)
    out = np.zeros(n, np.float32)
    freqs = [180, 400, 800, 1600, 3200]
    pos, kind = 0, rng.integers(n_types)
    while pos < n:
        seg = int(SR * rng.uniform(0.2, 0.45))
        t = np.arange(seg) / SR
        f = freqs[kind]
        tone = 0.5 * (np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) + 0.5 * np.sin(2 * np.pi * 2 * f * t))
        out[pos:pos + seg] = tone[:n - pos]
        pos, kind = pos + seg, (kind + 1) % n_types
    return out + 0.02 * rng.standard_normal(n).astype(np.float32)


# slow (~10-15 s): the loss parity tests above check the objective by default
@pytest.mark.slow
def test_pretraining_learns_masked_prediction_of_kmeans_units():
    """MFCC -> k-means (8 clusters, 100 Hz labels) -> pretrain a tiny HuBERT (50 Hz, label_rate=100) with
    fit(); the held-out masked-frame accuracy must end >= 3x chance (and above the majority class)."""
    from hubert_tf.units import fit_mfcc_kmeans, mfcc_labels

    start = time.time()
    rng = np.random.default_rng(0)
    train = [synthetic_utterance(rng) for _ in range(64)]
    held_out = [synthetic_utterance(rng) for _ in range(16)]
    clusters = 8
    kmeans = fit_mfcc_kmeans(train, n_clusters=clusters, seed=0)
    y_train = mfcc_labels(train, kmeans, pad_to=98)
    y_test = mfcc_labels(held_out, kmeans, pad_to=98)
    keras.utils.set_random_seed(0)
    model = TFHubertForPreTraining(tiny(hidden_size=48, intermediate_size=96, num_clusters=clusters, label_rate=100))
    train_ds = tf.data.Dataset.from_tensor_slices((np.stack(train), y_train)).shuffle(64, seed=0).batch(8)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(train_ds, epochs=25, verbose=0).history
    result = model.evaluate(tf.data.Dataset.from_tensor_slices((np.stack(held_out), y_test)).batch(8),
                            verbose=0, return_dict=True)
    chance = 1 / clusters
    counts = np.bincount(y_train[y_train >= 0], minlength=clusters)
    majority = counts.max() / counts.sum()
    print(f"pretraining: {time.time() - start:.1f}s; train acc_masked {history['acc_masked'][0]:.3f} -> "
          f"{history['acc_masked'][-1]:.3f}, loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}; "
          f"held-out acc_masked {result['acc_masked']:.3f} acc_unmasked {result['acc_unmasked']:.3f}; "
          f"chance {chance:.3f}, majority class {majority:.3f}")
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert result["acc_masked"] >= 3 * chance
    assert result["acc_masked"] > majority + 0.1
