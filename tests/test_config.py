"""HubertConfig: the reference's fields and defaults, derived values, validation, JSON round trips,
hub configs, and the parameter counts of the public architectures."""

import json
import os

import numpy as np
import pytest

from hubert_tf import HubertConfig
from hubert_tf.configuration import MAX_EXTRA_DEPTH, MAX_PARAMETERS

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
REFERENCE_COUNTS = [
    ("TFHubertModel", {}, 94_371_712),
    ("TFHubertForCTC", {}, 94_396_320),
    ("TFHubertModel", dict(conv_pos_batch_norm=True), 94_373_120),
    ("TFHubertModel", LARGE, 315_438_720),
    ("TFHubertForCTC", LARGE, 315_471_520),
    pytest.param("TFHubertModel", XLARGE, 962_497_408, marks=pytest.mark.slow),  # 1B parameters
]
COUNT_IDS = ["base", "base-ctc", "base-batchnorm", "large", "large-ctc", "xlarge"]


@pytest.mark.parametrize("cls, overrides, expected", REFERENCE_COUNTS, ids=COUNT_IDS)
def test_parameter_counts_match_reference(cls, overrides, expected):
    import hubert_tf

    model = getattr(hubert_tf, cls)(HubertConfig(**overrides))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == expected


# The estimate needs no model, so the 1B case is cheap here (`.values` drops pytest.param's slow mark).
@pytest.mark.parametrize("cls, overrides, expected", [getattr(p, "values", p) for p in REFERENCE_COUNTS],
                         ids=COUNT_IDS)
def test_parameter_estimate_is_exact(cls, overrides, expected):
    """The size cap's estimate, from the config alone, is the reference count plus the unused head."""
    config = HubertConfig(**overrides)
    h = config.hidden_size
    ctc_head = h * config.vocab_size + config.vocab_size
    proj = config.classifier_proj_size
    classification_head = h * proj + proj + proj * config.num_labels + config.num_labels
    unused = classification_head if cls == "TFHubertForCTC" else ctc_head + classification_head
    assert config.estimate_num_parameters() - unused == expected


# ------------------------------------------------------------------------- types, limits, hostile files
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(do_stable_layer_norm="false"), "do_stable_layer_norm must be true or false.*'false'"),
        (dict(conv_bias="true"), "conv_bias must be true or false"),
        (dict(apply_spec_augment=1), "apply_spec_augment must be true or false"),
        (dict(layer_norm_eps=float("nan")), "layer_norm_eps must be a finite number, got nan"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps must be a small positive number"),
        (dict(layer_norm_eps=-1e-5), "layer_norm_eps"),
        (dict(initializer_range=float("inf")), "initializer_range must be a finite number"),
        (dict(hidden_dropout="0.1"), "hidden_dropout must be a number, got '0.1'"),
        (dict(hidden_size=768.0), r"hidden_size must be an integer, got 768\.0"),
        (dict(num_hidden_layers=True), "num_hidden_layers must be an integer"),
        (dict(num_hidden_layers=100_000), r"num_hidden_layers must be in \[0, 256\], got 100000"),
        (dict(vocab_size=10**9), "vocab_size must be in"),
        (dict(conv_dim=[512] * 1_000_000), "conv_dim has 1000000 entries, more than the limit of 32"),
        (dict(conv_dim=5), "conv_dim must be a list of integers"),
        (dict(conv_kernel=("10",) * 7), "conv_kernel must be an integer"),
        (dict(conv_dim=(10**6,) * 7), r"conv_dim entries must be in \[1, 16384\]"),
        (dict(conv_dim=(), conv_kernel=(), conv_stride=()), "conv_dim must have at least one entry"),
        (dict(hidden_act=["gelu"]), "hidden_act must be a string"),
        (dict(pad_token_id="0"), "pad_token_id must be an integer"),
        (dict(num_labels=10**9), r"num_labels must be in \[1, 1048576\]"),
        (dict(id2label={"x": "a"}), "id2label keys must be integers, got 'x'"),
        (dict(id2label={0: 5}), "id2label values must be strings"),
        (dict(id2label=[1, 2]), "id2label must be a mapping"),
        (dict(hidden_size=16384, num_attention_heads=16, intermediate_size=65536, num_hidden_layers=200),
         "parameters, more than the limit"),
        (dict(extra_thing=object()), "config field 'extra_thing' holds a object, not JSON data"),
    ],
)
def test_bad_field_types_and_sizes_are_one_line_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message) as info:
        HubertConfig(**overrides)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_largest_real_models_are_well_inside_the_limits():
    assert HubertConfig(**XLARGE).estimate_num_parameters() * 4 <= MAX_PARAMETERS


def test_numpy_integers_become_python_ints():
    config = HubertConfig(num_hidden_layers=np.int64(3), conv_dim=np.array([512] * 7), vocab_size=np.int32(40))
    assert type(config.num_hidden_layers) is int and config.conv_dim == (512,) * 7
    assert json.loads(config.to_json_string())["vocab_size"] == 40


def test_values_assigned_after_construction_are_checked_by_validate():
    config = HubertConfig()
    config.layer_norm_eps = float("nan")
    with pytest.raises(ValueError, match="layer_norm_eps"):
        config.validate()


def _nested(depth):
    value = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deeply_nested_unknown_key_is_refused_at_construction():
    HubertConfig(extra=_nested(MAX_EXTRA_DEPTH))  # the limit itself is fine
    with pytest.raises(ValueError, match="'extra' is nested deeper than 32 levels"):
        HubertConfig(extra=_nested(600))


def test_deeply_nested_config_file_is_refused_at_load_naming_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 768, "extra": ' + "[" * 600 + "]" * 600 + "}")
    with pytest.raises(ValueError, match=r"config\.json.*nested deeper"):
        HubertConfig.from_json_file(path)
    with pytest.raises(ValueError, match=r"config\.json"):
        HubertConfig.from_pretrained(tmp_path)


def test_string_booleans_in_a_config_file_name_the_file_and_field(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"do_stable_layer_norm": "false"}))
    with pytest.raises(ValueError, match=r"config\.json: do_stable_layer_norm must be true or false"):
        HubertConfig.from_pretrained(tmp_path)


def test_bad_values_are_quoted_short():
    with pytest.raises(ValueError) as info:
        HubertConfig(hidden_act="x" * 10_000)
    assert len(str(info.value)) < 400
