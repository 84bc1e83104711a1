"""The Keras API of the models: input formats, outputs, graph modes, functional use, layer configs,
explicit time masks, and clear errors for bad inputs; the shared harness (tests/harness.py: round trips,
variable length, predict, tf.data fit) for TFHubertModel and TFHubertForCTC."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import harness
from conftest import assert_close, fixture_dir, reference
from hubert_tf import TFHubertForCTC, TFHubertModel
from hubert_tf.modeling import (
    TFHubertAttention, TFHubertEncoder, TFHubertEncoderLayer, TFHubertEncoderStableLayerNorm,
    TFHubertFeatureEncoder, TFHubertFeatureProjection, TFHubertFeedForward, TFHubertMainLayer,
    TFHubertPositionalConvEmbedding,
)

ATOL = 1e-4


@pytest.mark.parametrize("case, check", harness.params(["TFHubertModel", "TFHubertForCTC"],
                                                       harness.ROUND_TRIPS + harness.RUNS))
def test_harness(case, check, tmp_path):
    check(harness.CASES[case], tmp_path)


@pytest.fixture(scope="module")
def ctc():
    return TFHubertForCTC.from_pretrained(fixture_dir("base_style"))


@pytest.fixture(scope="module")
def ref():
    return reference("base_style")


def test_input_formats_agree(ctc, ref):
    x, m = ref["batch_input_values"], ref["batch_attention_mask"]
    expected = ctc(x, attention_mask=m).logits.numpy()
    for out in (
        ctc([x, m]), ctc((x, m)), ctc({"input_values": x, "attention_mask": m}),
        ctc(input_values=x, attention_mask=m), ctc(tf.constant(x), attention_mask=tf.constant(m)),
    ):
        np.testing.assert_allclose(out.logits.numpy(), expected, atol=1e-6)
    assert_close(expected, ref["batch_logits"], ATOL, "logits")


def test_integer_audio_is_cast(ctc, ref):
    x = (ref["single_input_values"] * 1000).astype(np.int32)
    np.testing.assert_allclose(ctc(x).logits.numpy(), ctc(x.astype(np.float32)).logits.numpy(), atol=1e-6)


def test_unknown_and_missing_inputs_are_named(ctc, ref):
    x = ref["single_input_values"]
    with pytest.raises(ValueError, match="input_valuez"):
        ctc({"input_valuez": x})
    with pytest.raises(ValueError, match="missing 'input_values'"):
        ctc({"attention_mask": np.ones_like(x, np.int32)})
    with pytest.raises(ValueError, match="given twice"):
        ctc({"input_values": x, "attention_mask": np.ones_like(x, np.int32)}, attention_mask=np.ones_like(x))


def test_outputs_read_as_attributes_keys_and_tuples(ctc, ref):
    x = ref["single_input_values"]
    labels = np.array([[1, 2, 3]])
    out = ctc(x, labels=labels, output_hidden_states=True)
    assert out.logits is out["logits"] and out.attentions is None and "attentions" not in out
    assert out[0] is out.loss and out[1] is out.logits
    as_tuple = ctc(x, labels=labels, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
    np.testing.assert_allclose(as_tuple[1].numpy(), out.logits.numpy())
    assert len(as_tuple[2]) == ctc.config.num_hidden_layers + 1


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_matches_eager(ctc, ref, jit_compile):
    x, m, labels = ref["batch_input_values"], ref["batch_attention_mask"], ref["batch_labels"]

    @tf.function(jit_compile=jit_compile)
    def step(x, m, labels):
        out = ctc(x, attention_mask=m, labels=labels)
        return out.logits, out.loss

    logits, loss = step(tf.constant(x), tf.constant(m), tf.constant(labels))
    assert_close(logits, ref["batch_logits"], ATOL, "logits in tf.function")
    assert abs(float(loss) - float(ref["batch_loss_sum"])) <= 1e-4 * abs(float(ref["batch_loss_sum"]))


def test_symbolic_functional_model_predicts_same_values(ctc, ref):
    x = keras.Input(shape=(None,), name="input_values")
    functional = keras.Model(x, ctc(x)["logits"])
    got = functional.predict(ref["single_input_values"], verbose=0)
    assert_close(got, ref["single_logits"], ATOL, "functional logits")


def test_explicit_mask_time_indices_match_reference():
    ref = reference("large_style")
    model = TFHubertForCTC.from_pretrained(fixture_dir("large_style"))
    out = model.hubert(ref["single_input_values"], mask_time_indices=ref["single_mask_time_indices"])
    assert_close(out["last_hidden_state"], ref["single_masked_last_hidden_state"], ATOL, "masked")


def test_bare_model_and_head_share_the_body(ref):
    base = TFHubertModel.from_pretrained(fixture_dir("base_style"))
    out = base(ref["single_input_values"], output_hidden_states=True)
    assert_close(out.hidden_states[1], ref["single_hidden_states_1"], ATOL, "hidden_states[1]")


def test_layers_round_trip_their_config(tiny_config):
    layers = [
        TFHubertFeatureEncoder([8, 8], [10, 3], [5, 2], True, "layer"),
        TFHubertFeatureProjection(8, 16, False),
        TFHubertPositionalConvEmbedding(16, 5, 4, True),
        TFHubertAttention(16, 4, 0.1),
        TFHubertFeedForward(16, 20, "relu"),
        TFHubertEncoderLayer(16, 4, 20, stable_layer_norm=True),
        TFHubertEncoder(tiny_config),
        TFHubertEncoderStableLayerNorm(tiny_config),
        TFHubertMainLayer(tiny_config),
    ]
    for layer in layers:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config, type(layer).__name__


def test_weights_exist_before_the_first_call(tiny_config):
    model = TFHubertModel(tiny_config)
    assert model.built and model.count_params() > 0


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((1, 80), np.float32), "minimum of 90"),  # tiny_config's receptive field is 90 samples
        (np.zeros((16000,), np.float32), "batch axis"),
        (np.zeros((1, 16000, 2), np.float32), "mono"),
    ],
)
def test_bad_audio_shapes(tiny_config, x, match):
    model = TFHubertModel(tiny_config)
    with pytest.raises(ValueError, match=match):
        model(x)


def test_bad_attention_masks(ctc, ref):
    x = ref["batch_input_values"]
    with pytest.raises(ValueError, match="attention_mask has shape"):
        ctc(x, attention_mask=np.ones((x.shape[0], 10), np.int32))
    with pytest.raises(ValueError, match="only 0"):
        ctc(x, attention_mask=np.full(x.shape, 2, np.int32))


def test_bad_labels(ctc, ref):
    x = ref["single_input_values"]
    with pytest.raises(ValueError, match="vocab_size"):
        ctc(x, labels=np.array([[1, 12]]))
    with pytest.raises(ValueError, match="-100"):
        ctc(x, labels=np.array([[1, -5]]))
    with pytest.raises(ValueError, match="batch size"):
        ctc(x, labels=np.array([[1], [2]]))


def test_label_check_inside_tf_function(ctc, ref):
    @tf.function
    def loss(x, labels):
        return ctc(x, labels=labels).loss

    with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size"):
        loss(tf.constant(ref["single_input_values"]), tf.constant([[1, 99]]))


def test_layerdrop_and_spec_augment_only_in_training(tiny_config):
    config = tiny_config.copy(layerdrop=0.5, mask_time_prob=0.5, mask_time_length=2, hidden_dropout=0.0,
                              attention_dropout=0.0, activation_dropout=0.0, final_dropout=0.0)
    model = TFHubertModel(config)
    x = np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32)
    a, b = model(x).last_hidden_state.numpy(), model(x).last_hidden_state.numpy()
    np.testing.assert_array_equal(a, b)

    @tf.function
    def train_call(x):
        return model(x, training=True).last_hidden_state

    outs = [train_call(x).numpy() for _ in range(4)]
    assert any(not np.allclose(outs[0], o) for o in outs[1:]), "training randomness frozen at trace time"


def test_processor_output_goes_straight_into_the_model(ctc, ref):
    from conftest import PROCESSOR_FILES
    from hubert_tf import HubertProcessor

    processor = HubertProcessor.from_pretrained(PROCESSOR_FILES)
    x, m = ref["batch_input_values"], ref["batch_attention_mask"]
    audio = [x[i, : int(m[i].sum())] for i in range(len(x))]
    inputs = processor(audio=audio, sampling_rate=16000, padding=True, return_tensors="tf")
    expected = ctc(inputs["input_values"], attention_mask=inputs["attention_mask"]).logits
    np.testing.assert_allclose(ctc(inputs).logits.numpy(), expected.numpy(), atol=1e-6)
