"""Shared test helpers: fixture paths, reference outputs and a tolerance assertion that reports the
measured difference."""

import json
import os

import numpy as np
import pytest

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
