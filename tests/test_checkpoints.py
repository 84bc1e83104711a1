"""Checkpoints: every Hugging Face format loads into the right classes with the reference's outputs,
names with and without the `hubert.` prefix, the warnings and errors users know, saving in the
reference layout (atomically), hub ids from a local cache, and Keras-native saving."""

import json
import logging
import os
import shutil

import keras
import numpy as np
import pytest

from conftest import FIXTURES, assert_close, fixture_dir, reference
from hubert_tf import HubertConfig, TFHubertForCTC, TFHubertModel
from hubert_tf.checkpoints import saving
from hubert_tf.checkpoints.formats.safetensors import read_safetensors

ATOL = 1e-4
FORMATS = os.path.join(FIXTURES, "checkpoint_formats")
LEGACY = os.path.join(FIXTURES, "formats", "legacy_h5")


def base_logits(model):
    ref = reference("base_style")
    return model(ref["batch_input_values"], attention_mask=ref["batch_attention_mask"]).logits


@pytest.mark.parametrize("variant", ["sharded_safetensors", "legacy_bin", "sharded_bin"])
def test_format_variants_reproduce_reference(variant):
    model = TFHubertForCTC.from_pretrained(os.path.join(FORMATS, variant))
    assert_close(base_logits(model), reference("base_style")["batch_logits"], ATOL, variant)


@pytest.mark.parametrize("weights", ["tf_model.h5", "pytorch_model.bin", "model.safetensors"])
def test_legacy_tf_h5_and_bin_of_the_old_transformers(tmp_path, weights):
    """tf_model.h5 written by the old transformers TFHubertForCTC (transformers 4.57, Keras 2)."""
    for name in ("config.json", weights):
        shutil.copy(os.path.join(LEGACY, name), tmp_path)
    model = TFHubertForCTC.from_pretrained(tmp_path)
    with np.load(os.path.join(LEGACY, "reference_logits.npz")) as ref:
        assert_close(model(ref["input_values"]).logits, ref["pt_logits"], ATOL, weights)


def test_first_format_found_wins(tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(fixture_dir("base_style"), name), tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")  # never read
    assert_close(base_logits(TFHubertForCTC.from_pretrained(tmp_path)), reference("base_style")["batch_logits"],
                 ATOL, "safetensors first")


def test_pretrained_only_checkpoint_into_ctc_head(caplog):
    with caplog.at_level(logging.WARNING, logger="hubert_tf"):
        model = TFHubertForCTC.from_pretrained(os.path.join(FORMATS, "pretrained_only"))
    assert "newly initialized" in caplog.text and "lm_head.weight" in caplog.text
    ref = reference("base_style")
    out = model(ref["single_input_values"], output_hidden_states=True)
    assert_close(out.hidden_states[-1], ref["single_hidden_states_2"], ATOL, "body")


def test_ctc_checkpoint_into_bare_model(caplog):
    with caplog.at_level(logging.WARNING, logger="hubert_tf"):
        model = TFHubertModel.from_pretrained(fixture_dir("base_style"))
    assert "not used" in caplog.text and "lm_head.weight" in caplog.text and "newly" not in caplog.text
    ref = reference("base_style")
    assert_close(model(ref["single_input_values"]).last_hidden_state, ref["single_last_hidden_state"], ATOL, "body")


def test_missing_masked_spec_embed_is_reported_and_harmless(caplog):
    with caplog.at_level(logging.WARNING, logger="hubert_tf"):
        model = TFHubertForCTC.from_pretrained(fixture_dir("odd_pos_kernel"), mask_time_prob=0.05)
    assert "hubert.masked_spec_embed" in caplog.text
    ref = reference("odd_pos_kernel")
    assert_close(model(ref["single_input_values"]).logits, ref["single_logits"], ATOL, "logits")


def test_mismatched_shapes(caplog):
    with pytest.raises(ValueError, match=r"lm_head\.weight.*\(12, 32\).*\(20, 32\)"):
        TFHubertForCTC.from_pretrained(fixture_dir("base_style"), vocab_size=20)
    with caplog.at_level(logging.WARNING, logger="hubert_tf"):
        model = TFHubertForCTC.from_pretrained(fixture_dir("base_style"), vocab_size=20, ignore_mismatched_sizes=True)
    assert "re-initialized" in caplog.text and model.lm_head.kernel.shape == (32, 20)


def test_save_pretrained_writes_the_reference_state_dict(tmp_path):
    model = TFHubertForCTC.from_pretrained(fixture_dir("base_style"))
    model.save_pretrained(tmp_path)
    ours = read_safetensors(tmp_path / "model.safetensors")
    theirs = read_safetensors(os.path.join(fixture_dir("base_style"), "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key].shape == theirs[key].shape, key
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["HubertForCTC"] and config["model_type"] == "hubert"


def test_save_pretrained_shards_and_reloads(tmp_path):
    model = TFHubertForCTC.from_pretrained(fixture_dir("batch_norm_pos"))
    model.save_pretrained(tmp_path, max_shard_size="50KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and not (tmp_path / "model.safetensors").exists()
    assert "hubert.encoder.pos_conv_embed.batch_norm.num_batches_tracked" in index["weight_map"]
    again = TFHubertForCTC.from_pretrained(tmp_path)
    ref = reference("batch_norm_pos")
    assert_close(again(ref["single_input_values"]).logits, ref["single_logits"], ATOL, "resharded")
    # Saving again unsharded removes the stale shards and index.
    again.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


def test_failed_save_leaves_previous_files_intact(tmp_path, monkeypatch):
    model = TFHubertForCTC.from_pretrained(fixture_dir("base_style"))
    model.save_pretrained(tmp_path)
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}

    def failing_write(path, tensors, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(saving, "write_safetensors_to", failing_write)
    model.config.num_hidden_layers  # unchanged config
    with pytest.raises(OSError, match="injected"):
        model.save_pretrained(tmp_path)
    assert {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)} == before


def test_hub_id_from_local_cache_offline(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--facebook--hubert-tiny-test" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(fixture_dir("base_style"), name), snapshot)
    refs = tmp_path / "models--facebook--hubert-tiny-test" / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = TFHubertForCTC.from_pretrained("facebook/hubert-tiny-test", cache_dir=str(tmp_path))
    assert_close(base_logits(model), reference("base_style")["batch_logits"], ATOL, "from cache")
    with pytest.raises(OSError, match="not in the local hub cache"):
        TFHubertForCTC.from_pretrained("facebook/not-cached", cache_dir=str(tmp_path))


def test_missing_weights_list_what_was_looked_for(tmp_path):
    HubertConfig().save_pretrained(tmp_path)
    with pytest.raises(OSError, match="model.safetensors.*tf_model.h5.*pytorch_model.bin"):
        TFHubertForCTC.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="no such directory: .*nowhere"):
        TFHubertForCTC.from_pretrained(tmp_path / "nowhere")


def test_shard_index_outside_directory_is_refused(tmp_path):
    shutil.copy(os.path.join(fixture_dir("base_style"), "config.json"), tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"lm_head.weight": "../../etc/passwd"}}))
    with pytest.raises(ValueError, match="passwd"):
        TFHubertForCTC.from_pretrained(tmp_path)


def test_weight_table_is_explicit():
    """Every variable of every model class has a row naming its layout op; a variable without one is an error."""
    from hubert_tf import TFHubertForPreTraining, TFHubertForSequenceClassification
    from hubert_tf.checkpoints.names import reference_entries

    config = HubertConfig.from_pretrained(fixture_dir("large_style"), use_weighted_layer_sum=True)
    layouts = {}
    for cls in (TFHubertForCTC, TFHubertModel, TFHubertForSequenceClassification, TFHubertForPreTraining):
        for entry in reference_entries(cls(config)):
            layouts[entry.keys[0]] = (entry.row.layout, entry.row.legacy)
    assert layouts["hubert.encoder.layers.0.attention.q_proj.weight"] == ("dense", "identity")
    assert layouts["hubert.feature_extractor.conv_layers.0.conv.weight"] == ("conv1d", "identity")
    assert layouts["hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0"] == ("weight_g", "identity")
    assert layouts["hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1"] == ("conv1d", "conv1d")
    assert layouts["label_embs_concat"] == ("identity", "identity")  # [clusters, final_dim] in fairseq too
    assert layouts["layer_weights"] == ("identity", "identity")
    assert layouts["encoder.layer_norm.weight"] == ("identity", "identity")  # TFHubertModel: no prefix

    from types import SimpleNamespace

    variable = SimpleNamespace(path="tf_hubert_for_ctc/hubert/encoder/layers.3/mystery/kernel")
    model = SimpleNamespace(name="tf_hubert_for_ctc", base_model_prefix="hubert", weights=[variable])
    with pytest.raises(KeyError, match=r"layers\.3/mystery/kernel.*'encoder/layers\.N/mystery'.*add one"):
        list(reference_entries(model))


def test_keras_native_round_trip(tmp_path):
    model = TFHubertForCTC.from_pretrained(fixture_dir("large_style"))
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert type(again) is TFHubertForCTC and again.config == model.config
    x = reference("large_style")["single_input_values"]
    np.testing.assert_array_equal(again(x).logits.numpy(), model(x).logits.numpy())


def test_transformers_loads_what_we_save(tmp_path):
    """Dev-only: the reference loads our save with no missing/unexpected keys and the same outputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = TFHubertForCTC.from_pretrained(fixture_dir("batch_norm_pos"))
    model.save_pretrained(tmp_path)
    theirs, info = transformers.HubertForCTC.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ref = reference("batch_norm_pos")
    with torch.no_grad():
        logits = theirs.eval()(torch.from_numpy(ref["single_input_values"])).logits.numpy()
    assert_close(logits, model(ref["single_input_values"]).logits, 1e-5, "transformers reload")
