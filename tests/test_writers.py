"""Crash-safe writers (issue 20): the processor, tokenizer, feature extractor and k-means files are
serialised before the target is touched and written atomically, so a value that is not JSON data or a
full disk (ENOSPC, simulated) leaves the previous files intact and no temporary file behind."""

import errno
import json
import os

import numpy as np
import pytest

from hubert_tf.processing import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor
from hubert_tf.units.kmeans import KMeans

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6}


def snapshot(directory):
    """{name: bytes} of every file in `directory` (temporary files included)."""
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


@pytest.fixture
def disk_full(monkeypatch):
    """Every fsync fails as on a full disk: atomic writers fsync each file before renaming it."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


# ------------------------------------------------------------------------- numpy values are written as numbers
def test_numpy_ids_in_a_vocab_are_saved_as_ints(tmp_path):
    # The old writer opened vocab.json, then json.dumps raised on np.int64: an empty vocab.json.
    tokenizer = HubertCTCTokenizer({token: np.int64(i) for token, i in VOCAB.items()})
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == VOCAB
    assert HubertCTCTokenizer.from_pretrained(tmp_path).decode([5, 5, 0, 5, 4, 6]) == "AA B"


def test_numpy_padding_value_is_saved_as_a_float(tmp_path):
    extractor = HubertFeatureExtractor(padding_value=np.float32(0.5), sampling_rate=np.int64(16000))
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["padding_value"] == 0.5 and saved["sampling_rate"] == 16000
    assert HubertFeatureExtractor.from_pretrained(tmp_path).padding_value == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(padding_value="0"), "padding_value must be a number"),
    (dict(padding_value=float("nan")), "padding_value must be finite"),
    (dict(do_normalize="false"), "do_normalize must be true or false"),
    (dict(return_attention_mask="true"), "return_attention_mask must be true or false"),
    (dict(sampling_rate=10**9), r"sampling_rate must be a finite number of Hz in \[1000, 384000\]"),
])
def test_feature_extractor_refuses_values_it_would_misread(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HubertFeatureExtractor(**kwargs)


@pytest.mark.parametrize("vocab, kwargs, message", [
    ({"A": 1.5}, {}, r"vocab\['A'\] must be an integer"),
    ({"A": "1"}, {}, r"vocab\['A'\] must be an integer"),
    ({"A": -1}, {}, "non-negative"),
    (VOCAB, dict(do_lower_case="false"), "do_lower_case must be true or false"),
])
def test_tokenizer_refuses_values_it_would_misread(vocab, kwargs, message):
    with pytest.raises(ValueError, match=message):
        HubertCTCTokenizer(vocab, **kwargs)


# ------------------------------------------------------------------------- a failure leaves the old files
def good_processor():
    return HubertProcessor(HubertFeatureExtractor(return_attention_mask=True), HubertCTCTokenizer(VOCAB))


def test_unserialisable_value_names_the_field_and_touches_nothing(tmp_path):
    good_processor().save_pretrained(tmp_path)
    before = snapshot(tmp_path)
    bad_tokenizer = HubertCTCTokenizer(VOCAB, custom_field={"nested": {1, 2}})
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: 'custom_field'\['nested'\] is a set"):
        HubertProcessor(HubertFeatureExtractor(), bad_tokenizer).save_pretrained(tmp_path)
    bad_extractor = HubertFeatureExtractor(processor_class=object())
    with pytest.raises(ValueError, match=r"preprocessor_config\.json: 'processor_class' is a object"):
        bad_extractor.save_pretrained(tmp_path)
    assert snapshot(tmp_path) == before  # every file as it was, nothing half written, no temp files


@pytest.mark.parametrize("save", [
    lambda p: good_processor().save_pretrained(p),
    lambda p: HubertCTCTokenizer(VOCAB, do_lower_case=True).save_pretrained(p),
    lambda p: HubertFeatureExtractor(do_normalize=False).save_pretrained(p),
], ids=["processor", "tokenizer", "feature_extractor"])
def test_a_full_disk_leaves_the_previous_files_intact(tmp_path, disk_full, save):
    with pytest.MonkeyPatch.context() as undo:
        undo.setattr(os, "fsync", lambda fd: None)
        good_processor().save_pretrained(tmp_path)
    before = snapshot(tmp_path)
    assert json.loads(before["vocab.json"]) == VOCAB
    with pytest.raises(OSError, match="No space left"):
        save(tmp_path)
    assert snapshot(tmp_path) == before


def test_saving_into_a_file_path_is_an_os_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(OSError, match="is a file, expected a directory"):
        good_processor().save_pretrained(path)


# ------------------------------------------------------------------------- k-means files
def fitted(seed=0, **metadata):
    x = np.concatenate([np.zeros((20, 2)), np.ones((20, 2)) * 4]) + np.random.default_rng(seed).normal(size=(40, 2)) * 0.1
    return KMeans(2, seed=seed, metadata=metadata).fit(x)


def test_kmeans_metadata_with_numpy_scalars_is_saved_as_numbers(tmp_path):
    # The old writer raised TypeError from json.dumps for a numpy layer index.
    path = fitted(layer=np.int64(6), label_rate=np.float32(50.0)).save(tmp_path / "km")
    loaded = KMeans.load(path)
    assert loaded.metadata == {"layer": 6, "label_rate": 50.0} and type(loaded.metadata["layer"]) is int


def test_kmeans_bad_metadata_or_a_full_disk_leave_the_old_file(tmp_path, monkeypatch):
    path = fitted(seed=0, layer=6).save(tmp_path / "km.npz")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"km\.npz metadata: 'model' is a object"):
        fitted(seed=1, model=object()).save(path)
    assert snapshot(tmp_path) == before

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        fitted(seed=2, layer=9).save(path)
    assert snapshot(tmp_path) == before  # the old centroids, and no .tmp file (the old writer left one)
    monkeypatch.undo()
    assert KMeans.load(path).metadata == {"layer": 6}


def test_kmeans_metadata_nested_too_deeply_is_refused_at_load(tmp_path):
    path = str(tmp_path / "deep.npz")
    np.savez(path, centroids=np.zeros((2, 2), np.float32), metadata=np.array("[" * 1000 + "]" * 1000))
    with pytest.raises(ValueError, match=r"deep\.npz metadata: JSON nested deeper"):
        KMeans.load(path)
