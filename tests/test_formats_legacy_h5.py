"""Legacy ``tf_model.h5`` reader, on a genuine file written by transformers' TFHubertForCTC.

The fixture (``tests/fixtures/formats/legacy_h5``, see ``tools/fixtures_formats.py``) holds a
tiny random HubertForCTC as PyTorch state (``pytorch_model_state.npz``) and as converted by
``TFHubertForCTC.from_pretrained(..., from_pt=True).save_pretrained`` (``tf_model.h5``).
``test_every_h5_weight_is_a_known_transform_of_a_torch_weight`` is the written-down relation
between the two naming schemes that the weight-name table has to implement.
"""

import os

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubert_tf.checkpoints.formats import read_legacy_tf_h5

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "formats", "legacy_h5")
H5 = os.path.join(FIXTURE, "tf_model.h5")
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def torch_state():
    with np.load(os.path.join(FIXTURE, "pytorch_model_state.npz")) as data:
        return {k: data[k] for k in data.files}


def test_names_are_full_weight_names_in_file_order():
    weights = read_legacy_tf_h5(H5)
    names = list(weights)
    assert len(names) == 48
    assert names[0] == "tf_hubert_for_ctc/hubert/masked_spec_embed:0"
    assert names[-2:] == ["tf_hubert_for_ctc/lm_head/kernel:0", "tf_hubert_for_ctc/lm_head/bias:0"]
    assert all(name.startswith("tf_hubert_for_ctc/") and name.endswith(":0") for name in names)
    with h5py.File(H5, "r") as f:  # each name is the dataset path below its layer group
        for name in names:
            layer = name.split("/")[1]
            np.testing.assert_array_equal(f[layer][name][()], weights[name])


def test_shapes_of_the_distinctive_weights():
    weights = read_legacy_tf_h5(H5)
    prefix = "tf_hubert_for_ctc/hubert/"
    expected = {
        prefix + "feature_extractor/conv_layers.0/conv/kernel:0": (10, 1, 16),
        prefix + "feature_extractor/conv_layers.1/conv/kernel:0": (3, 16, 16),
        prefix + "feature_extractor/conv_layers.0/layer_norm/gamma:0": (16,),
        prefix + "feature_projection/projection/kernel:0": (16, 32),
        prefix + "encoder/pos_conv_embed/conv/weight_v:0": (32, 8, 16),
        prefix + "encoder/pos_conv_embed/conv/weight_g:0": (16, 1, 1),
        prefix + "encoder/layers.1/feed_forward/intermediate_dense/kernel:0": (32, 37),
        "tf_hubert_for_ctc/lm_head/kernel:0": (32, 12),
    }
    for name, shape in expected.items():
        assert weights[name].shape == shape, name
        assert weights[name].dtype == np.float32


def torch_counterpart(name, state):
    """The torch name and value an h5 weight was converted from (transformers' from_pt rules)."""
    scope, leaf = name.split("/")[1:-1], name.split("/")[-1][: -len(":0")]
    base = ".".join(scope)
    if leaf == "kernel":  # Dense: (in, out) = weight.T; Conv1D: (k, in, out) = weight.transpose(2, 1, 0)
        value = state[base + ".weight"]
        return base + ".weight", value.T if value.ndim == 2 else value.transpose(2, 1, 0)
    if leaf in ("gamma", "beta"):  # LayerNorm / GroupNorm scale and offset
        key = base + (".weight" if leaf == "gamma" else ".bias")
        return key, state[key]
    if leaf == "weight_v":  # weight-norm direction: same layout as torch (out, in / groups, k)
        key = base + ".parametrizations.weight.original1"
        return key, state[key]
    if leaf == "weight_g":  # weight-norm magnitude: torch (1, 1, k), h5 (k, 1, 1)
        key = base + ".parametrizations.weight.original0"
        return key, state[key].reshape(-1, 1, 1)
    key = f"{base}.{leaf}" if base else leaf  # biases, masked_spec_embed
    return key, state[key]


def test_every_h5_weight_is_a_known_transform_of_a_torch_weight():
    state = torch_state()
    used = set()
    for name, value in read_legacy_tf_h5(H5).items():
        key, expected = torch_counterpart(name, state)
        np.testing.assert_array_equal(value, expected, err_msg=f"{name} <- {key}")
        used.add(key)
    assert used == set(state)  # a bijection: nothing left over on either side


def test_model_save_layout_and_chunked_name_lists(tmp_path):
    path = str(tmp_path / "model_save.h5")
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        root.attrs["layer_names0"] = np.array([b"dense"])
        root.attrs["layer_names1"] = np.array([b"head"])
        root.create_group("dense").attrs["weight_names"] = np.array([b"m/dense/kernel:0"])
        root["dense"].create_dataset("m/dense/kernel:0", data=np.eye(2, dtype=np.float32))
        root.create_group("head").attrs["weight_names"] = np.array([], dtype="S1")
    weights = read_legacy_tf_h5(path)
    assert list(weights) == ["m/dense/kernel:0"]
    np.testing.assert_array_equal(weights["m/dense/kernel:0"], np.eye(2))


def build_h5(path, layer_names=(b"dense",), weight_names=(b"m/dense/kernel:0",), create=True):
    with h5py.File(path, "w") as f:
        if layer_names is not None:
            f.attrs["layer_names"] = np.array(layer_names)
        group = f.create_group("dense")
        if weight_names is not None:
            group.attrs["weight_names"] = np.array(weight_names)
        if create:
            group.create_dataset("m/dense/kernel:0", data=np.zeros(2))
    return str(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_names=None), "no 'layer_names' attribute"),
        (dict(layer_names=(b"missing",)), "has no group"),
        (dict(weight_names=None), "no 'weight_names' attribute"),
        (dict(create=False), "is listed but missing"),
    ],
)
def test_not_a_keras_weights_layout(tmp_path, kwargs, message):
    path = build_h5(tmp_path / "odd.h5", **kwargs)
    with pytest.raises(ValueError, match=message) as info:
        read_legacy_tf_h5(path)
    assert str(info.value).startswith(path)


def test_not_hdf5_and_truncated_files(tmp_path):
    blob = open(H5, "rb").read()
    for content, message in [
        (b"", "not an HDF5 file"),
        (b"hello" * 200, "not an HDF5 file"),
        (blob[:2000], "corrupt or truncated"),
        (blob[: len(blob) // 2], "corrupt or truncated"),
    ]:
        path = str(tmp_path / "bad.h5")
        with open(path, "wb") as f:
            f.write(content)
        with pytest.raises(ValueError, match=message) as info:
            read_legacy_tf_h5(path)
        assert str(info.value).startswith(path)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_legacy_tf_h5(tmp_path / "nope.h5")


@FUZZ
@given(data=st.binary(max_size=2048), signature=st.booleans())
def test_random_bytes_raise_only_documented_errors(tmp_path, data, signature):
    path = tmp_path / "fuzz.h5"
    path.write_bytes((b"\x89HDF\r\n\x1a\n" if signature else b"") + data)
    with pytest.raises((ValueError, OSError)):
        read_legacy_tf_h5(path)


@FUZZ
@given(st.data())
def test_truncated_and_mutated_files_raise_only_documented_errors(tmp_path, data):
    blob = bytearray(open(H5, "rb").read())
    blob = blob[: data.draw(st.integers(0, len(blob)), label="cut")]
    for _ in range(data.draw(st.integers(0, 4), label="mutations")):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.h5"
    path.write_bytes(bytes(blob))
    try:
        read_legacy_tf_h5(path)
    except (ValueError, OSError):
        pass
