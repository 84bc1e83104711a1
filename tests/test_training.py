"""Fine-tuning with `model.fit()`: the model's own CTC loss (no `loss=` in compile), graph mode and XLA,
label checks that raise ValueError from compiled code, infeasible labels, SpecAugment / layerdrop drawn
anew at every training call, and freezing."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from hubert_tf import TFHubertForCTC

BATCH, SAMPLES = 4, 3200


def make_model(tiny_config, **overrides):
    keras.utils.set_random_seed(0)
    return TFHubertForCTC(tiny_config.copy(**overrides))


def make_data(n=8, vocab_size=12, label_length=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SAMPLES)).astype("float32")
    mask = np.ones((n, SAMPLES), "int32")
    mask[n // 2:, SAMPLES * 3 // 4:] = 0  # half the rows padded
    x[mask == 0] = 0.0
    labels = rng.integers(1, vocab_size, (n, label_length)).astype("int32")
    labels[0, -2:] = -100
    return {"input_values": x, "attention_mask": mask, "labels": labels}


def as_dataset(data, tuples=False):
    if tuples:
        inputs = {k: v for k, v in data.items() if k != "labels"}
        return tf.data.Dataset.from_tensor_slices((inputs, data["labels"])).batch(BATCH)
    return tf.data.Dataset.from_tensor_slices(data).batch(BATCH)


def weights_of(variables):
    return {v.path: v.numpy().copy() for v in variables}


@pytest.mark.parametrize("tuples", [False, True], ids=["dict_with_labels", "inputs_labels_tuples"])
def test_fit_evaluate_predict_use_the_model_loss(tiny_config, tuples):
    # SpecAugment on both axes (mask_feature_prob > 0 crashed the old TF code) and layerdrop in training.
    model = make_model(tiny_config, mask_time_prob=0.1, mask_time_length=2, mask_feature_prob=0.2,
                       mask_feature_length=4, layerdrop=0.1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert not model.run_eagerly
    data = make_data()
    before = weights_of(model.trainable_weights)
    history = model.fit(as_dataset(data, tuples), epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses)) and losses[0] > 0
    # Every trainable weight moved: gradients reach all of them on CPU, the grouped positional conv included.
    after = weights_of(model.trainable_weights)
    unchanged = [path for path in before if np.array_equal(before[path], after[path])]
    assert not unchanged, f"weights without an update: {unchanged}"
    assert any("pos_conv_embed/conv/weight_v" in path for path in before)

    result = model.evaluate(as_dataset(data, tuples), verbose=0, return_dict=True)
    eager = model(data, training=False).loss  # batch of 8: "sum" reduction = sum of the two batches' sums
    assert np.isclose(result["loss"] * 2, float(eager), rtol=1e-4)

    predicted = model.predict(as_dataset(data, tuples), verbose=0)
    assert "loss" not in predicted
    assert predicted["logits"].shape == (8, model.hubert.frame_lengths(SAMPLES), tiny_config.vocab_size)


def test_fit_with_jit_compile(tiny_config):
    model = make_model(tiny_config, mask_time_prob=0.1, mask_time_length=2, mask_feature_prob=0.2,
                       mask_feature_length=4, layerdrop=0.3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    data = make_data()
    history = model.fit(as_dataset(data), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # XLA drops assertions: the labels are checked outside the compiled step.
    data["labels"][5, 1] = tiny_config.vocab_size
    with pytest.raises(ValueError, match=r"labels must be in \[0, 12\).*got \[12\]"):
        model.fit(as_dataset(data), verbose=0)


@pytest.mark.parametrize("bad_label", [12, -101])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_invalid_labels_raise_value_error_in_graph_mode(tiny_config, method, bad_label):
    model = make_model(tiny_config)
    model.compile(optimizer="adam")
    data = make_data()
    data["labels"][6, 2] = bad_label
    with pytest.raises(ValueError, match=rf"labels must be in \[0, 12\) \(vocab_size\) or -100.*got \[{bad_label}\]"):
        getattr(model, method)(as_dataset(data, tuples=method == "fit"), verbose=0)


def test_infeasible_labels(tiny_config):
    """Labels needing more frames than the audio gives: inf (with a warning when eager), or 0 and no
    gradient with ctc_zero_infinity."""
    data = make_data(n=4)
    frames = int(TFHubertForCTC(tiny_config).hubert.frame_lengths(SAMPLES * 3 // 4))  # rows 2, 3 are padded
    labels = np.full((4, frames + 1), -100, "int32")
    labels[:3, :3] = [1, 2, 3]
    labels[3] = np.resize([1, 2], frames + 1)  # one label more than the row's frames
    data["labels"] = labels

    model = make_model(tiny_config)
    with pytest.warns(RuntimeWarning, match="labels longer than the output frames"):
        assert np.isinf(float(model(data).loss))

    model = make_model(tiny_config, ctc_zero_infinity=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feasible_only = float(model({k: v[:3] for k, v in data.items()}).loss)
        assert np.isclose(float(model(data).loss), feasible_only, rtol=1e-5)
    assert not [w for w in caught if "output frames" in str(w.message)]
    model.compile(optimizer="adam")
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_element_without_input_values_is_named(tiny_config):
    model = make_model(tiny_config)
    model.compile(optimizer="adam")
    data = make_data()
    data["audio"] = data.pop("input_values")
    with pytest.raises(ValueError, match="audio"):
        model.fit(as_dataset(data), verbose=0)
    del data["audio"]
    with pytest.raises(ValueError, match="missing 'input_values'"):
        model.fit(as_dataset(data), verbose=0)


def test_spec_augment_masks_are_new_at_every_training_call(tiny_config):
    """Two training-mode calls inside ONE tf.function draw different time and feature masks; eval mode
    does not mask."""
    model = make_model(tiny_config, mask_time_prob=0.3, mask_time_length=2, mask_feature_prob=0.3,
                       mask_feature_length=2)
    body = model.hubert
    fill = 5.0  # masked_spec_embed is drawn from U(0, 1): time-masked frames are told apart from 5
    hidden = tf.fill([2, 40, tiny_config.hidden_size], fill)

    @tf.function
    def step(h):
        return (body._spec_augment(h, None, None, training=True),
                body._spec_augment(h, None, None, training=True),
                body._spec_augment(h, None, None, training=False))

    def masks(out):
        out = out.numpy()
        feature = np.all(out == 0.0, axis=1)  # [batch, hidden]
        time = np.any((out != fill) & ~feature[:, None, :], axis=2)  # [batch, frames]
        return time, feature

    first, second, evaluation = step(hidden)
    (time1, feature1), (time2, feature2) = masks(first), masks(second)
    assert time1.any() and feature1.any()
    assert not np.array_equal(time1, time2) and not np.array_equal(feature1, feature2)
    np.testing.assert_array_equal(evaluation, hidden)
    # The next step draws again.
    third, _, _ = step(hidden)
    assert not np.array_equal(masks(third)[0], time1)

    # The whole model: training calls differ from each other, evaluation calls are identical.
    x = make_data(n=2)["input_values"]

    @tf.function
    def forward(inputs):
        return [model(inputs, training=training).logits for training in (True, True, False, False)]

    train1, train2, eval1, eval2 = forward(x)
    assert not np.allclose(train1, train2)
    np.testing.assert_array_equal(eval1, eval2)
    np.testing.assert_allclose(eval1, model(x).logits, atol=1e-5)


def test_layerdrop_is_drawn_at_every_training_call(tiny_config):
    model = make_model(tiny_config, layerdrop=0.5, mask_time_prob=0.0, hidden_dropout=0.0, activation_dropout=0.0,
                       attention_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0)
    x = make_data(n=1)["input_values"]

    @tf.function
    def forward(inputs):
        return [model(inputs, training=True).logits for _ in range(8)] + [model(inputs).logits]

    *train, evaluation = [out.numpy() for out in forward(x)]
    distinct = {out.tobytes() for out in train}
    assert 1 < len(distinct) <= 4  # 2 layers: at most 4 keep/skip patterns, more than one drawn
    np.testing.assert_allclose(evaluation, model(x).logits, atol=1e-5)


@pytest.mark.parametrize("freeze", ["freeze_feature_encoder", "freeze_base_model"])
def test_frozen_weights_do_not_change_in_fit(tiny_config, freeze):
    model = make_model(tiny_config)
    getattr(model, freeze)()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    frozen_layer = model.hubert.feature_extractor if freeze == "freeze_feature_encoder" else model.hubert
    frozen = weights_of(frozen_layer.weights)
    assert frozen and not any(v.trainable for v in frozen_layer.weights)
    trained = weights_of(model.trainable_weights)
    assert trained and not set(frozen) & set(trained)
    model.fit(as_dataset(make_data()), epochs=1, verbose=0)
    for path, value in weights_of(frozen_layer.weights).items():
        np.testing.assert_array_equal(value, frozen[path], err_msg=path)
    after = weights_of(model.trainable_weights)
    assert all(not np.array_equal(after[path], trained[path]) for path in trained)
