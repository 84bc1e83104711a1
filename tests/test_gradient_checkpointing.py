"""Gradient checkpointing (`model.gradient_checkpointing_enable()`): each Transformer layer is recomputed
in the backward pass, with the forward pass's dropout masks, so loss and gradients equal the plain
model's; `fit()` picks the setting up; inference is untouched."""

import keras
import numpy as np
import pytest
import tensorflow as tf

DROPOUT = {"hidden_dropout": 0.2, "activation_dropout": 0.2, "attention_dropout": 0.2, "layerdrop": 0.0,
           "mask_time_prob": 0.0, "feat_proj_dropout": 0.0}


@pytest.fixture
def traced(monkeypatch):
    """How many layer calls were traced checkpointed (`encoder._checkpointed`): the tests below would
    pass with the setting ignored, so they check it was used."""
    from hubert_tf.modeling import encoder

    calls = []
    original = encoder._checkpointed

    def counting(layer, bias):
        calls.append(layer.name)
        return original(layer, bias)

    monkeypatch.setattr(encoder, "_checkpointed", counting)
    return calls


def seeded(model_class, config):
    keras.utils.set_random_seed(0)
    model = model_class(config)
    model(np.zeros((1, 3200), "float32"))
    return model


def loss_and_gradients(model, x):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            hidden = model(x, training=True).last_hidden_state
            loss = tf.reduce_sum(hidden * hidden)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = step(x)
    return float(loss), [g.numpy() for g in gradients]


@pytest.mark.parametrize("stable_layer_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_same_loss_and_gradients_with_dropout(tiny_config, stable_layer_norm, traced):
    # With dropout in every layer the recomputation must redraw the forward pass's masks: without
    # restoring the seed states the gradients differ by a third of their largest value.
    from hubert_tf import TFHubertModel

    config = tiny_config.copy(do_stable_layer_norm=stable_layer_norm, **DROPOUT)
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 3200)).astype("float32"))
    plain = seeded(TFHubertModel, config)
    checkpointed = seeded(TFHubertModel, config)
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing and not plain.is_gradient_checkpointing
    want_loss, want = loss_and_gradients(plain, x)
    assert traced == []
    loss, got = loss_and_gradients(checkpointed, x)
    assert traced == ["layers.0", "layers.1"]
    assert loss == pytest.approx(want_loss, rel=1e-6)
    scale = max(np.abs(g).max() for g in want)
    for g, w, variable in zip(got, want, plain.trainable_variables):
        np.testing.assert_allclose(g, w, atol=1e-6 * scale, rtol=1e-5, err_msg=variable.path)
    # inference does not checkpoint and gives the plain numbers
    np.testing.assert_allclose(checkpointed(x).last_hidden_state.numpy(), plain(x).last_hidden_state.numpy(),
                               atol=1e-6)


def test_fit_trains_the_same_with_checkpointing(tiny_config, traced):
    from hubert_tf import TFHubertForCTC

    config = tiny_config.copy(**DROPOUT)
    rng = np.random.default_rng(1)
    data = tf.data.Dataset.from_tensor_slices({
        "input_values": rng.standard_normal((4, 3200)).astype("float32"),
        "labels": rng.integers(1, 12, (4, 5)).astype("int32")}).batch(2)
    models = []
    for enable in (False, True):
        model = seeded(TFHubertForCTC, config)
        model.compile(optimizer=keras.optimizers.SGD(1e-3))
        model.fit(data.take(1), epochs=1, verbose=0)  # traced once without checkpointing
        if enable:
            model.gradient_checkpointing_enable()  # the next fit() traces its step again
        models.append((model, model.fit(data, epochs=2, verbose=0).history["loss"]))
        assert bool(traced) == enable
    (plain, want), (checkpointed, got) = models
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(checkpointed.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)
    checkpointed.gradient_checkpointing_disable()
    assert not checkpointed.is_gradient_checkpointing


def test_gradient_checkpointing_kwargs_are_refused(tiny_config):
    from hubert_tf import TFHubertModel

    with pytest.raises(ValueError, match="gradient_checkpointing_kwargs are not supported"):
        TFHubertModel(tiny_config).gradient_checkpointing_enable({"use_reentrant": False})


def test_fit_with_layerdrop(tiny_config):
    # TensorFlow cannot take the gradient of a tf.cond around tf.recompute_grad: with checkpointing a
    # dropped layer is computed and not selected (as under XLA). Without that, fit() raised here.
    from hubert_tf import TFHubertForCTC

    model = seeded(TFHubertForCTC, tiny_config.copy(**{**DROPOUT, "layerdrop": 0.5}))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.gradient_checkpointing_enable()
    rng = np.random.default_rng(2)
    data = tf.data.Dataset.from_tensor_slices({
        "input_values": rng.standard_normal((4, 3200)).astype("float32"),
        "labels": rng.integers(1, 12, (4, 5)).astype("int32")}).batch(2)
    losses = model.fit(data, epochs=2, verbose=0).history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all()
