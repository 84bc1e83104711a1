"""HubertFeatureExtractor: parity with transformers' Wav2Vec2FeatureExtractor, config I/O, bad input.

Reference outputs come from tools/fixtures_processing.py (transformers 5) via
tests/fixtures/processing/feature_extraction.{json,npz}.
"""

import json
import logging
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubert_tf.processing import BatchFeature, HubertFeatureExtractor

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "processing")
HUB_FILES = os.path.join(FIXTURES, "hub_files")
TOLERANCE = 1e-6  # max abs difference allowed against the reference (observed: 0.0)

with open(os.path.join(FIXTURES, "feature_extraction.json")) as _f:
    CASES = json.load(_f)
ARRAYS = np.load(os.path.join(FIXTURES, "feature_extraction.npz"))


def hub_extractor(**overrides):
    return HubertFeatureExtractor.from_pretrained(HUB_FILES, **overrides)


def case_inputs(case):
    if isinstance(case["inputs"], list):
        return [ARRAYS[key] for key in case["inputs"]]
    array = ARRAYS[case["inputs"]]
    return array.tolist() if case.get("input_kind") == "list_of_floats" else array


def reference_rows(case, key):
    """The reference output for `key` as a list of 1-D rows (it returns lists or stacked arrays)."""
    spec = case["outputs"][key]
    if spec["kind"] == "list":
        return [ARRAYS[f"{case['name']}/{key}_{i}"] for i in range(spec["length"])]
    return list(ARRAYS[f"{case['name']}/{key}"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_reference(case):
    extractor = hub_extractor(**case["overrides"])
    out = extractor(case_inputs(case), sampling_rate=16000, **case["kwargs"])

    assert isinstance(out, BatchFeature)
    assert set(out) == set(case["outputs"])
    for key in case["outputs"]:
        expected = reference_rows(case, key)
        got = list(out[key])
        assert len(got) == len(expected)
        if case["kwargs"].get("return_tensors") == "np":
            assert isinstance(out[key], np.ndarray) and out[key].dtype == np.dtype(case["outputs"][key]["dtype"])
        for got_row, expected_row in zip(got, expected):
            assert got_row.shape == expected_row.shape
            assert got_row.dtype == expected_row.dtype  # float32 values, int32 mask
            np.testing.assert_allclose(got_row, expected_row, rtol=0, atol=TOLERANCE)


def test_attribute_and_key_access_and_tf_tensors():
    import tensorflow as tf

    extractor = hub_extractor()
    waves = [np.linspace(-1, 1, 500), np.linspace(0, 1, 320)]
    out = extractor(waves, sampling_rate=16000, padding=True, return_tensors="tf")
    assert out.input_values is out["input_values"]
    assert isinstance(out.input_values, tf.Tensor) and out.input_values.dtype == tf.float32
    assert out["attention_mask"].dtype == tf.int32
    assert out.attention_mask.numpy().sum(axis=1).tolist() == [500, 320]
    # TF tensors are accepted as input too, and give the numpy results.
    again = extractor([tf.constant(w) for w in waves], sampling_rate=16000, padding=True, return_tensors="np")
    np.testing.assert_array_equal(again.input_values, out.input_values.numpy())
    with pytest.raises(AttributeError, match="labels"):
        out.labels


def test_left_padding_normalises_over_valid_samples():
    # The reference slices the first `length` samples even for left padding (wrong); we use the mask.
    waves = [np.random.default_rng(0).normal(size=400), np.random.default_rng(1).normal(size=250)]
    right = hub_extractor()(waves, sampling_rate=16000, padding=True, return_tensors="np")
    left = hub_extractor(padding_side="left")(waves, sampling_rate=16000, padding=True, return_tensors="np")
    np.testing.assert_array_equal(left.attention_mask[1], np.r_[np.zeros(150), np.ones(250)])
    np.testing.assert_allclose(left.input_values[1, 150:], right.input_values[1, :250], atol=1e-6)
    assert np.all(left.input_values[1, :150] == 0.0)


def test_pad_is_a_collator_without_normalisation():
    extractor = hub_extractor()
    batch = extractor.pad([{"input_values": np.full(3, 2.0)}, {"input_values": np.full(5, 2.0)}],
                          pad_to_multiple_of=4, return_tensors="np")
    assert batch.input_values.tolist() == [[2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 2, 2, 0, 0, 0]]
    assert batch.attention_mask.sum(axis=1).tolist() == [3, 5]


def test_save_and_load_round_trip_keeps_unknown_keys(tmp_path):
    with open(os.path.join(HUB_FILES, "preprocessor_config.json")) as f:
        config = dict(json.load(f), processor_class="Wav2Vec2Processor")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "preprocessor_config.json").write_text(json.dumps(config))
    extractor = HubertFeatureExtractor.from_pretrained(tmp_path / "src")
    assert extractor.return_attention_mask is True and extractor.do_normalize is True
    paths = extractor.save_pretrained(tmp_path / "out")
    assert paths == [str(tmp_path / "out" / "preprocessor_config.json")]
    assert json.loads((tmp_path / "out" / "preprocessor_config.json").read_text()) == config


def test_loads_transformers5_processor_config():
    extractor = HubertFeatureExtractor.from_pretrained(os.path.join(FIXTURES, "hub_files_v5"))
    assert extractor.to_dict() == hub_extractor().to_dict()


def test_from_pretrained_overrides_and_missing_file(tmp_path):
    assert hub_extractor(return_attention_mask=False).return_attention_mask is False
    with pytest.raises(OSError, match="preprocessor_config.json"):
        HubertFeatureExtractor.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(feature_size=2), "feature_size"),
        (dict(padding_side="middle"), "padding_side"),
        (dict(sampling_rate=0), "sampling_rate"),
        (dict(feature_extractor_type="WhisperFeatureExtractor"), "WhisperFeatureExtractor"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HubertFeatureExtractor(**kwargs)


def test_wrong_sampling_rate_says_how_to_resample():
    with pytest.raises(ValueError) as info:
        hub_extractor()(np.zeros(100), sampling_rate=44100)
    message = str(info.value)
    assert "16000" in message and "44100" in message and "load_audio" in message


def test_missing_sampling_rate_warns_once(caplog):
    extractor = hub_extractor()
    with caplog.at_level(logging.WARNING):
        extractor(np.ones(10))
        extractor(np.ones(10))
    assert sum("sampling_rate" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    "speech, kwargs, message",
    [
        (np.zeros((2, 3, 100)), {}, "mono"),
        ([np.zeros((100, 2))], {}, "mono"),
        (np.zeros((16000, 2)), {}, "multi-channel"),
        ([], {}, "empty"),
        ([np.zeros(10), np.zeros(0)], {}, "utterance 1 is empty"),
        (np.array([0.0, np.nan, 1.0]), {}, "non-finite"),
        ([np.ones(5), np.array([1.0, np.inf])], {}, "utterance 1 contains a non-finite"),
        (np.float32(1.0), {}, "scalar"),
        (["a", "b"], {}, "dtype"),
        ([np.ones(5)], dict(padding="max_length"), "max_length"),
        ([np.ones(5)], dict(truncation=True), "max_length"),
        ([np.ones(5)], dict(padding="sideways"), "sideways"),
        ([np.ones(5)], dict(return_tensors="pt"), "'np'"),
        ([np.ones(5), np.ones(6)], dict(return_tensors="np"), "padding=True"),
    ],
)
def test_bad_input_raises_value_error(speech, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hub_extractor()(speech, sampling_rate=16000, **kwargs)


@settings(max_examples=50, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 1200), min_size=1, max_size=4),
    scale=st.floats(1e-6, 1e4),
    constant=st.booleans(),
    padding=st.sampled_from([True, "max_length", False]),
    truncation=st.booleans(),
    multiple=st.sampled_from([None, 1, 7, 128]),
    mask=st.sampled_from([None, True, False]),
    seed=st.integers(0, 2**16),
)
def test_random_inputs_give_finite_outputs(lengths, scale, constant, padding, truncation, multiple, mask, seed):
    rng = np.random.default_rng(seed)
    waves = [np.full(n, scale) if constant else scale * rng.standard_normal(n) for n in lengths]
    max_length = int(rng.integers(1, 1300))
    out = hub_extractor()(
        waves, sampling_rate=16000, padding=padding, max_length=max_length, truncation=truncation,
        pad_to_multiple_of=multiple, return_attention_mask=mask,
    )
    assert len(out.input_values) == len(lengths)
    for i, row in enumerate(out.input_values):
        assert row.dtype == np.float32 and np.all(np.isfinite(row))
        if "attention_mask" in out:
            valid = out.attention_mask[i].astype(bool)
            assert valid.sum() == (min(lengths[i], _limit(max_length, multiple)) if truncation else lengths[i])
            if padding is not False:
                assert np.all(row[~valid] == 0.0)
    # One length unless padding="max_length" left longer utterances untruncated.
    if padding is True or truncation and padding or max(lengths) <= max_length and padding:
        assert len({len(row) for row in out.input_values}) == 1


def _limit(max_length, multiple):
    return max_length if not multiple else -(-max_length // multiple) * multiple
