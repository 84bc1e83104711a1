"""wav2vec 2.0 / XLS-R / MMS through the HuBERT layers (issue 19).

- Configs: `Wav2Vec2Config` is field for field the reference's (the fixtures' config.json, written by
  transformers, load and write back unchanged); bad values are one-line errors.
- Parity with transformers' `Wav2Vec2ForCTC` (base style: group norm, post-LN; large style: layer norm,
  pre-LN, conv bias), `Wav2Vec2Model` and `Wav2Vec2ForSequenceClassification` on tiny random checkpoints
  (tools/make_fixtures.py w2v_*): every hidden state, attentions, logits (max abs diff <= 1e-4) and losses
  (relative <= 1e-4), on a padded batch and an unpadded example.
- MMS: attention adapters (`adapter_attn_dim`), `load_adapter(target_lang)` against the reference's
  `load_adapter`, `from_pretrained(target_lang=)`, the tokenizer's per-language vocabulary.
- Weight names: the `wav2vec2.` prefix through the one weight table, both directions; a HuBERT class
  given a wav2vec2 checkpoint builds its wav2vec2 sibling, the other way is one ValueError.
- Surfaces: the harness checks, transcribe(), the CLI, SavedModel, TFLite and fit() on TFWav2Vec2ForCTC.
"""

import json
import os
import shutil

import numpy as np
import pytest

import hubert_tf
import harness
from conftest import PROCESSOR_FILES, assert_close, fixture_dir, reference, reference_class
from hubert_tf import (HubertConfig, TFHubertForCTC, TFHubertModel, TFWav2Vec2ForCTC, TFWav2Vec2Model,
                       Wav2Vec2Config, load_config)
from hubert_tf.checkpoints.loading import plan_checkpoint
from hubert_tf.checkpoints.names import reference_entries

CASES = ("w2v_base_style", "w2v_large_style", "w2v_bare", "w2v_cls", "w2v_mms")
CTC_CASES = ("w2v_base_style", "w2v_large_style", "w2v_mms")
ATOL = 1e-4
RTOL_LOSS = 1e-4
TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
            conv_dim=(8, 8, 16), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2)

_models = {}


def load(case):
    if case not in _models:
        _models[case] = getattr(hubert_tf, "TF" + reference_class(case)).from_pretrained(fixture_dir(case))
    return _models[case]


def inputs_of(ref, tag):
    inputs = {"input_values": ref[f"{tag}_input_values"]}
    if f"{tag}_attention_mask" in ref:
        inputs["attention_mask"] = ref[f"{tag}_attention_mask"]
    return inputs


# ----------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("case", CASES)
def test_reference_config_loads_and_writes_back_unchanged(case):
    with open(os.path.join(fixture_dir(case), "config.json")) as f:
        written = json.load(f)
    config = load_config(fixture_dir(case))
    assert type(config) is Wav2Vec2Config and config.model_type == "wav2vec2"
    ours = json.loads(config.to_json_string())
    assert {k: v for k, v in ours.items() if k in written} == written
    # Fields the reference type does not have are fixed and never written.
    assert config.feat_proj_layer_norm is True and config.conv_pos_batch_norm is False
    assert "feat_proj_layer_norm" not in ours and "conv_pos_batch_norm" not in ours


def test_defaults_are_the_references():
    config = Wav2Vec2Config()
    assert (config.output_hidden_size, config.adapter_attn_dim, config.add_adapter, config.num_adapter_layers,
            config.num_codevectors_per_group, config.proj_codevector_dim, config.tdnn_dim) == (
        768, None, False, 3, 320, 256, (512, 512, 512, 512, 1500))
    assert Wav2Vec2Config(hidden_size=1024, num_attention_heads=16).output_hidden_size == 1024
    # The base architecture: the same parameter count as HuBERT base (its projection norm included).
    assert config.estimate_num_parameters() == HubertConfig().estimate_num_parameters()


@pytest.mark.parametrize("overrides, message", [
    (dict(feat_proj_layer_norm=False), "feat_proj_layer_norm must be True"),
    (dict(conv_pos_batch_norm=True), "conv_pos_batch_norm must be False"),
    (dict(adapter_attn_dim=0), "adapter_attn_dim"),
    (dict(adapter_attn_dim=2.5), "adapter_attn_dim must be an integer"),
    (dict(add_adapter="true"), "add_adapter must be true or false"),
    (dict(num_adapter_layers=-1), "num_adapter_layers"),
    (dict(tdnn_dim="512"), "tdnn_dim must be a list"),
    (dict(feat_quantizer_dropout=1.5), "feat_quantizer_dropout"),
])
def test_bad_fields_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        Wav2Vec2Config(**overrides)


def test_config_classes_are_picked_by_model_type(tmp_path):
    assert type(load_config(fixture_dir("base_style"))) is HubertConfig
    with pytest.raises(ValueError, match="expected 'hubert'; load it with Wav2Vec2Config"):
        HubertConfig.from_pretrained(fixture_dir("w2v_base_style"))
    with pytest.raises(ValueError, match="expected 'wav2vec2'"):
        Wav2Vec2Config.from_pretrained(fixture_dir("base_style"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"config\.json: model_type 'bert' is not supported"):
        load_config(tmp_path)


def test_conv_adapter_is_refused_clearly():
    with pytest.raises(ValueError, match="add_adapter=True"):
        TFWav2Vec2Model(Wav2Vec2Config(**TINY, add_adapter=True))


# ----------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("tag", ["batch", "single"])
@pytest.mark.parametrize("case", CASES)
def test_outputs_match_reference(case, tag):
    model, ref = load(case), reference(case)
    out = model(inputs_of(ref, tag), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    diffs = {"hidden_states": max(assert_close(h, ref[f"{tag}_hidden_states_{i}"], ATOL, f"{case} {tag} hidden {i}")
                                  for i, h in enumerate(out.hidden_states))}
    for i, a in enumerate(out.attentions):
        assert_close(a, ref[f"{tag}_attentions_{i}"], ATOL, f"{case} {tag} attentions[{i}]")
    if "last_hidden_state" in out:
        diffs["last_hidden_state"] = assert_close(out.last_hidden_state, ref[f"{tag}_last_hidden_state"], ATOL, case)
    if f"{tag}_logits" in ref:
        diffs["logits"] = assert_close(out.logits, ref[f"{tag}_logits"], ATOL, f"{case} {tag} logits")
    print(f"{case} {tag}: max abs diff " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", CTC_CASES)
def test_ctc_loss_matches_reference(case, reduction):
    model, ref = load(case), reference(case)
    saved, model.config.ctc_loss_reduction = model.config.ctc_loss_reduction, reduction
    try:
        loss = float(model(inputs_of(ref, "batch"), labels=ref["batch_labels"]).loss)
    finally:
        model.config.ctc_loss_reduction = saved
    expected = float(ref[f"batch_loss_{reduction}"])
    assert abs(loss - expected) <= RTOL_LOSS * abs(expected), f"{case} {reduction}: {loss} vs {expected}"


@pytest.mark.parametrize("case", CTC_CASES)
def test_gradients_match_reference(case):
    """d(CTC loss)/d(weight) for every weight, adapters included (tolerance: tests/test_gradients.py)."""
    from harness import assert_gradients_match
    from test_gradients import our_gradients

    model, ref = getattr(hubert_tf, "TF" + reference_class(case)).from_pretrained(fixture_dir(case)), reference(case)
    _, pairs = our_gradients(model, ref, str(ref["grad_reduction"]), training=False)
    expected = {k[len("grad/"):]: ref[k] for k in ref if k.startswith("grad/")}
    assert any("adapter_layer" in k for k in expected) == (case == "w2v_mms")
    assert_gradients_match(f"{case} eval", pairs, expected)


def test_classification_loss_matches_reference():
    model, ref = load("w2v_cls"), reference("w2v_cls")
    loss = float(model(inputs_of(ref, "batch"), labels=ref["batch_labels"]).loss)
    assert abs(loss - float(ref["batch_loss"])) <= RTOL_LOSS * abs(float(ref["batch_loss"]))


def test_masked_spec_embed_matches_reference():
    model, ref = load("w2v_base_style"), reference("w2v_base_style")
    out = model.hubert(ref["single_input_values"], mask_time_indices=ref["single_mask_time_indices"])
    assert_close(out["last_hidden_state"], ref["single_masked_last_hidden_state"], ATOL, "masked")


# ----------------------------------------------------------------------------------------- weight names
@pytest.mark.parametrize("case", CASES)
def test_weight_table_names_every_reference_key(case):
    model = load(case)
    ours = {entry.keys[0] for entry in reference_entries(model)}
    records, _ = plan_checkpoint(fixture_dir(case))
    assert ours == set(records), (sorted(ours ^ set(records)))[:5]
    assert model.wav2vec2 is model.hubert and model.hubert.name == "wav2vec2"


def test_save_pretrained_writes_the_reference_layout(tmp_path):
    model = load("w2v_large_style")
    model.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    assert config["model_type"] == "wav2vec2" and config["architectures"] == ["Wav2Vec2ForCTC"]
    written, _ = plan_checkpoint(str(tmp_path))
    original, _ = plan_checkpoint(fixture_dir("w2v_large_style"))
    assert set(written) == set(original)
    for key in ("wav2vec2.encoder.layers.0.attention.q_proj.weight", "lm_head.weight",
                "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1"):
        np.testing.assert_array_equal(written[key].read(), original[key].read(), err_msg=key)


def test_head_checkpoint_loads_into_the_bare_model():
    ctc, ref = load("w2v_base_style"), reference("w2v_base_style")
    bare = TFWav2Vec2Model.from_pretrained(fixture_dir("w2v_base_style"))
    np.testing.assert_array_equal(bare(ref["single_input_values"]).last_hidden_state,
                                  ctc.hubert(ref["single_input_values"])["last_hidden_state"])


def test_hubert_classes_build_the_wav2vec2_sibling_and_not_the_reverse():
    model = TFHubertForCTC.from_pretrained(fixture_dir("w2v_base_style"))
    assert type(model) is TFWav2Vec2ForCTC
    assert type(TFHubertModel.from_pretrained(fixture_dir("w2v_bare"))) is TFWav2Vec2Model
    with pytest.raises(ValueError, match="a 'hubert' checkpoint.*load it with TFHubertForCTC"):
        TFWav2Vec2ForCTC.from_pretrained(fixture_dir("base_style"))
    with pytest.raises(ValueError, match="TFHubertForCTC takes a HubertConfig.*use TFWav2Vec2ForCTC"):
        TFHubertForCTC(Wav2Vec2Config(**TINY))
    with pytest.raises(ValueError, match="a 'wav2vec2' checkpoint, which TFHubertForPreTraining does not load"):
        hubert_tf.TFHubertForPreTraining.from_pretrained(fixture_dir("w2v_base_style"))


# ----------------------------------------------------------------------------------------- MMS adapters
@pytest.fixture(scope="module")
def mms():
    return TFWav2Vec2ForCTC.from_pretrained(fixture_dir("w2v_mms"))


def test_load_adapter_matches_reference_and_swaps_back(mms):
    ref = reference("w2v_mms")
    assert mms.config.has_attention_adapters
    try:
        mms.load_adapter("fra")  # another vocabulary size: a new head
        assert mms.target_lang == "fra" and mms.config.vocab_size == 9
        for tag in ("batch", "single"):
            assert_close(mms(inputs_of(ref, tag)).logits, ref[f"fra_{tag}_logits"], ATOL, f"fra {tag}")
        assert len(mms.weights) == len(TFWav2Vec2ForCTC(mms.config).weights)
    finally:
        mms.load_adapter("eng")
    assert mms.config.vocab_size == 12
    assert_close(mms(ref["single_input_values"]).logits, ref["single_logits"], ATOL, "eng again")


def test_from_pretrained_target_lang_and_tokenizer():
    ref = reference("w2v_mms")
    model = TFHubertForCTC.from_pretrained(fixture_dir("w2v_mms"), target_lang="fra")
    assert type(model) is TFWav2Vec2ForCTC and model.target_lang == "fra"
    assert "target_lang" not in model.config.to_dict()  # a loading option, not a config field
    assert_close(model(ref["single_input_values"]).logits, ref["fra_single_logits"], ATOL, "target_lang=fra")
    tokenizer = hubert_tf.HubertCTCTokenizer.from_pretrained(fixture_dir("w2v_mms"), target_lang="fra")
    assert tokenizer.vocab_size == 9 and tokenizer.decode([5, 6, 4, 7]) == "mn o"
    tokenizer.set_target_lang("eng")
    assert tokenizer.vocab_size == 12 and tokenizer.decode([5, 6, 4, 7]) == "ab c"
    with pytest.raises(ValueError, match="target_lang='xyz' is not in the vocabulary"):
        tokenizer.set_target_lang("xyz")


def test_adapter_errors_are_named(mms, tmp_path):
    with pytest.raises(OSError, match="no adapter for language 'deu'.*adapter.deu.safetensors"):
        mms.load_adapter("deu")
    with pytest.raises(ValueError, match="target_lang must be a language id"):
        mms.load_adapter("../eng")
    with pytest.raises(ValueError, match="no adapter_attn_dim"):
        load("w2v_large_style").load_adapter("eng")
    with pytest.raises(ValueError, match="has no language adapters"):
        hubert_tf.TFHubertForCTC.from_pretrained(fixture_dir("base_style"), target_lang="eng")
    # A file with a key too many, or a bad shape, changes nothing.
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "mms"
    shutil.copytree(fixture_dir("w2v_mms"), copy)
    weights = load_file(str(copy / "adapter.fra.safetensors"))
    save_file({**weights, "wav2vec2.extra": np.zeros(2, np.float32)}, str(copy / "adapter.xx.safetensors"))
    bad = dict(weights)
    bad["wav2vec2.encoder.layers.0.adapter_layer.linear_1.weight"] = np.zeros((3, 32), np.float32)
    save_file(bad, str(copy / "adapter.yy.safetensors"))
    model = TFWav2Vec2ForCTC.from_pretrained(str(copy))
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(ValueError, match="unexpected adapter keys.*wav2vec2.extra"):
        model.load_adapter("xx")
    with pytest.raises(ValueError, match=r"linear_1.weight has shape \(3, 32\), the model expects \(8, 32\)"):
        model.load_adapter("yy")
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    assert model.config.vocab_size == 12


# ----------------------------------------------------------------------------------------- surfaces
@pytest.mark.parametrize("case, check", harness.params(
    ["TFWav2Vec2ForCTC"], [harness.run_config_round_trip, harness.run_keras_file_round_trip,
                           harness.run_weights_file_round_trip, harness.run_fit_one_step]))
def test_harness(case, check, tmp_path):
    check(harness.CASES[case], tmp_path)


@pytest.fixture(scope="module")
def w2v_asr_dir(tmp_path_factory):
    """A tiny random large-style TFWav2Vec2ForCTC at the real frame rate, with hub processor files."""
    path = tmp_path_factory.mktemp("w2v_asr")
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
                            vocab_size=32, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    TFWav2Vec2ForCTC(config).save_pretrained(path)
    for name in os.listdir(PROCESSOR_FILES):
        shutil.copy(os.path.join(PROCESSOR_FILES, name), path)
    return str(path)


def speech(seconds, seed):
    return (np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


def test_transcribe_and_cli_pick_the_wav2vec2_class(w2v_asr_dir, tmp_path, capsys):
    import soundfile as sf

    from hubert_tf.cli import main

    model = TFHubertForCTC.from_pretrained(w2v_asr_dir)
    processor = hubert_tf.HubertProcessor.from_pretrained(w2v_asr_dir)
    audio = speech(1.2, 3)
    features = processor(audio=audio, sampling_rate=16000, return_tensors="np")
    expected = processor.batch_decode(np.argmax(model(features["input_values"]).logits, -1))[0]
    assert type(model) is TFWav2Vec2ForCTC and expected.strip()  # a random model still emits characters
    assert hubert_tf.transcribe(audio, model=w2v_asr_dir) == {"text": expected}
    wav = tmp_path / "clip.wav"
    sf.write(wav, audio, 16000, subtype="FLOAT")
    assert main(["transcribe", str(wav), "--model", w2v_asr_dir, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == expected.strip()
    assert main(["info", w2v_asr_dir]) == 0
    assert "class:        TFWav2Vec2ForCTC" in capsys.readouterr().out


def _batch():
    x = np.stack([speech(0.5, 1), speech(0.5, 2)])
    mask = np.ones(x.shape, np.int32)
    mask[1, 5000:] = 0
    x[1, 5000:] = 0
    return x, mask


@pytest.mark.parametrize("with_text", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_saved_model(w2v_asr_dir, tmp_path, with_text):
    """serving_default equals the model; with the processor (slow: tracing the text signatures) the
    `transcribe` signature is there too."""
    import tensorflow as tf

    from hubert_tf.export import export_saved_model

    model = TFWav2Vec2ForCTC.from_pretrained(w2v_asr_dir)
    x, mask = _batch()
    path = export_saved_model(model, tmp_path / "w2v", version=1, processor=w2v_asr_dir if with_text else None)
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](input_values=tf.constant(x), attention_mask=tf.constant(mask))
    assert_close(got["logits"], model(x, attention_mask=mask).logits, 1e-5, "SavedModel logits")
    assert ("transcribe" in loaded.signatures) == with_text


def test_tflite(w2v_asr_dir, tmp_path):
    from hubert_tf.export import tflite_interpreter, to_tflite

    model = TFWav2Vec2ForCTC.from_pretrained(w2v_asr_dir)
    x, _ = _batch()
    runner = tflite_interpreter(to_tflite(model, tmp_path / "w2v.tflite")).get_signature_runner()
    assert_close(runner(input_values=x[:1])["logits"], model(x[:1]).logits, 1e-3, "TFLite logits")


def test_processor_takes_target_lang_for_a_per_language_vocabulary(tmp_path):
    """An MMS repo's processor: the nested vocab.json is read for the language asked for."""
    import json
    import shutil

    from hubert_tf import HubertProcessor

    for name in os.listdir(PROCESSOR_FILES):
        shutil.copy(os.path.join(PROCESSOR_FILES, name), tmp_path)
    shutil.copy(os.path.join(fixture_dir("w2v_mms"), "vocab.json"), tmp_path)
    config_path = tmp_path / "tokenizer_config.json"
    if config_path.exists():  # the language comes from the call, not the file
        config = json.loads(config_path.read_text())
        config.pop("target_lang", None)
        config_path.write_text(json.dumps(config))
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    for lang in vocab:
        processor = HubertProcessor.from_pretrained(tmp_path, target_lang=lang)
        assert processor.tokenizer.get_vocab() == vocab[lang]
