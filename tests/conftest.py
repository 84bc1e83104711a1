"""Shared test helpers: fixture paths, reference outputs and a tolerance assertion that reports the
measured difference."""

import json
import os

import numpy as np
import pytest

# The suite never reaches the network: hub ids resolve from local caches only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# The parity fixtures written by tools/make_fixtures.py with the PyTorch reference.
MODEL_CASES = ("base_style", "large_style", "batch_norm_pos", "odd_pos_kernel", "bare_large")
CLASSIFICATION_CASES = ("cls", "cls_weighted")


def fixture_dir(case):
    return os.path.join(FIXTURES, case)


def reference(case):
    """The reference outputs of `case` as a dict of numpy arrays."""
    with np.load(os.path.join(fixture_dir(case), "reference.npz")) as data:
        return {k: data[k] for k in data.files}


def reference_class(case):
    with open(os.path.join(fixture_dir(case), "SOURCE.json")) as f:
        return json.load(f)["model_class"]


def assert_close(actual, expected, atol, what=""):
    """max |actual - expected| <= atol, with the measured difference in the failure message."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != reference {expected.shape}"
    diff = float(np.max(np.abs(actual.astype(np.float64) - expected))) if actual.size else 0.0
    assert diff <= atol, f"{what}: max abs difference {diff:.3g} > {atol}"
    return diff


@pytest.fixture(scope="session")
def tiny_config():
    from hubert_tf import HubertConfig

    return HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=12,
        conv_dim=(16, 24, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )


PROCESSOR_FILES = os.path.join(FIXTURES, "processing", "hub_files")


def make_asr_dir(path, **overrides):
    """A tiny random TFHubertForCTC with the real frame rate (320 samples per frame) and the
    facebook/hubert-large-ls960-ft processor files, saved as a hub-style directory."""
    import shutil

    from hubert_tf import HubertConfig, TFHubertForCTC

    settings = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                    conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, vocab_size=32)
    settings.update(overrides)
    model = TFHubertForCTC(HubertConfig(**settings))
    model.save_pretrained(path)
    for name in os.listdir(PROCESSOR_FILES):
        shutil.copy(os.path.join(PROCESSOR_FILES, name), path)
    return str(path)


@pytest.fixture(scope="session")
def asr_dir(tmp_path_factory):
    """Group-norm (base-style) tiny ASR model directory."""
    return make_asr_dir(tmp_path_factory.mktemp("asr_group"))


@pytest.fixture(scope="session")
def asr_dir_layer_norm(tmp_path_factory):
    """Layer-norm, stable-layer-norm (large-style) tiny ASR model directory."""
    return make_asr_dir(tmp_path_factory.mktemp("asr_layer"), feat_extract_norm="layer", do_stable_layer_norm=True,
                        conv_bias=True)


# Slow tests (the 1B-parameter build, long fuzzing, big-audio memory checks) are skipped by default;
# run them with `pytest --runslow` (or HUBERT_TF_SLOW=1).
def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a slow test, skipped unless --runslow (or HUBERT_TF_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("HUBERT_TF_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
