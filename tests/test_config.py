"""HubertConfig: the reference's fields and defaults, derived values, validation, JSON round trips,
hub configs, and the parameter counts of the public architectures."""

import json
import os

import numpy as np
import pytest

from hubert_tf import HubertConfig, TFHubertForCTC, TFHubertModel

HUB_CONFIGS = os.path.join(os.path.dirname(__file__), "fixtures", "hub_configs")

# The reference's defaults (transformers.HubertConfig), written out so a drift in ours shows.
REFERENCE_DEFAULTS = dict(
    vocab_size=32, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout=0.1, activation_dropout=0.1, attention_dropout=0.1,
    feat_proj_layer_norm=True, feat_proj_dropout=0.0, final_dropout=0.1, layerdrop=0.1, initializer_range=0.02,
    layer_norm_eps=1e-5, feat_extract_norm="group", feat_extract_activation="gelu", conv_dim=(512,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False,
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, conv_pos_batch_norm=False,
    do_stable_layer_norm=False, apply_spec_augment=True, mask_time_prob=0.05, mask_time_length=10,
    mask_time_min_masks=2, mask_feature_prob=0.0, mask_feature_length=10, mask_feature_min_masks=0,
    ctc_loss_reduction="sum", ctc_zero_infinity=False, use_weighted_layer_sum=False, classifier_proj_size=256,
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)

LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
             feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
XLARGE = dict(LARGE, hidden_size=1280, num_hidden_layers=48, intermediate_size=5120)


def test_defaults_are_the_reference_ones():
    config = HubertConfig()
    for key, value in REFERENCE_DEFAULTS.items():
        assert getattr(config, key) == value, key
    assert config.num_feat_extract_layers == 7
    assert config.inputs_to_logits_ratio == 320
    assert config.receptive_field == 400


def test_json_round_trip_keeps_unknown_keys(tmp_path):
    config = HubertConfig(num_hidden_layers=3, architectures=["HubertForCTC"], mask_channel_prob=0.0,
                          id2label={0: "yes", 1: "no"})
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "hubert" and data["architectures"] == ["HubertForCTC"]
    assert data["num_feat_extract_layers"] == 7 and data["mask_channel_prob"] == 0.0
    again = HubertConfig.from_pretrained(tmp_path)
    assert again == config and again.num_labels == 2 and again.id2label[1] == "no"
    assert again.architectures == ["HubertForCTC"]


@pytest.mark.parametrize("name", sorted(os.listdir(HUB_CONFIGS)))
def test_hub_configs_load(name):
    path = os.path.join(HUB_CONFIGS, name)
    with open(path) as f:
        raw = json.load(f)
    config = HubertConfig.from_json_file(path)
    for key, value in raw.items():
        if key in ("id2label",):
            assert {str(k): v for k, v in config.id2label.items()} == value
        elif key != "num_feat_extract_layers":
            got = getattr(config, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert config.to_dict()["transformers_version"] == raw["transformers_version"]


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(conv_dim=(512,) * 6), "conv_dim"),
        (dict(hidden_size=770), "num_attention_heads"),
        (dict(hidden_size=780, num_attention_heads=12), "num_conv_pos_embedding_groups"),
        (dict(feat_extract_norm="batch"), "feat_extract_norm"),
        (dict(ctc_loss_reduction="max"), "ctc_loss_reduction"),
        (dict(hidden_act="gelu2"), "hidden_act"),
        (dict(feat_extract_activation="nope"), "feat_extract_activation"),
        (dict(mask_time_prob=1.5), "mask_time_prob"),
        (dict(hidden_dropout=-0.1), "hidden_dropout"),
        (dict(layerdrop=2), "layerdrop"),
        (dict(num_hidden_layers=-1), "num_hidden_layers"),
        (dict(pad_token_id=40), "pad_token_id"),
    ],
)
def test_invalid_configs_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        HubertConfig(**overrides)


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "hidden_size": 768,\n  "num_hidden_layers": ,\n}\n')
    with pytest.raises(ValueError, match=r"config\.json.*line 3"):
        HubertConfig.from_json_file(path)


def test_other_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ValueError, match="wav2vec2"):
        HubertConfig.from_pretrained(tmp_path)


def test_missing_config_names_what_was_looked_for(tmp_path):
    with pytest.raises(OSError, match="config.json"):
        HubertConfig.from_pretrained(tmp_path)


# Trainable parameter counts of the reference models (transformers 5.24, counted on the meta device).
@pytest.mark.parametrize(
    "cls, overrides, expected",
    [
        (TFHubertModel, {}, 94_371_712),
        (TFHubertForCTC, {}, 94_396_320),
        (TFHubertModel, dict(conv_pos_batch_norm=True), 94_373_120),
        (TFHubertModel, LARGE, 315_438_720),
        (TFHubertForCTC, LARGE, 315_471_520),
        (TFHubertModel, XLARGE, 962_497_408),
    ],
    ids=["base", "base-ctc", "base-batchnorm", "large", "large-ctc", "xlarge"],
)
def test_parameter_counts_match_reference(cls, overrides, expected):
    model = cls(HubertConfig(**overrides))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == expected
