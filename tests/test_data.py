"""`hubert_tf.data.make_dataset`: padded dict batches from arrays or lazily read files, bucketing,
shuffling, label checks and warnings, and `fit()` on the result; `read_librispeech`."""

import os
import warnings

import keras
import numpy as np
import pytest
import soundfile
import tensorflow as tf

from conftest import FIXTURES
from hubert_tf import TFHubertForCTC
from hubert_tf.data import auto_bucket_boundaries, make_dataset, read_librispeech
from hubert_tf.processing import HubertProcessor

TEXTS = ["HELLO WORLD", "A CAT", "NO", "THE DOG RAN", "SEE", "IT IS ON", "GO", "WE TRIED"]


@pytest.fixture(scope="module")
def processor():
    return HubertProcessor.from_pretrained(os.path.join(FIXTURES, "processing", "hub_files"))


def waves(n=len(TEXTS), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(1600 + 400 * i) * (i + 1)).astype("float32") for i in range(n)]


def batches(dataset):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def test_padded_dict_batches_from_arrays(processor):
    audio = waves()
    ds = make_dataset(audio, TEXTS, processor, batch_size=3, shuffle=False)
    assert ds.element_spec["input_values"].dtype == tf.float32
    assert ds.element_spec["attention_mask"].dtype == tf.int32
    assert ds.element_spec["labels"].dtype == tf.int32
    out = batches(ds)
    assert [len(b["input_values"]) for b in out] == [3, 3, 2]
    i = 0
    for batch in out:
        for row in range(len(batch["input_values"])):
            n = len(audio[i])
            assert batch["attention_mask"][row].sum() == n and not batch["attention_mask"][row, n:].any()
            expected = processor(audio=audio[i], sampling_rate=16000, return_tensors="np")["input_values"][0]
            np.testing.assert_allclose(batch["input_values"][row, :n], expected, atol=1e-6)
            assert not batch["input_values"][row, n:].any()
            ids = processor.tokenizer(TEXTS[i])["input_ids"]
            assert batch["labels"][row, :len(ids)].tolist() == ids
            assert (batch["labels"][row, len(ids):] == -100).all()
            i += 1


def test_files_are_read_lazily_and_resampled(processor, tmp_path):
    audio = waves(4)
    paths = [str(tmp_path / f"{i}.{'flac' if i % 2 else 'wav'}") for i in range(4)]
    ds = make_dataset(paths, TEXTS[:4], processor, batch_size=4, shuffle=False)
    # The files are written after the dataset is made: nothing was read yet.
    for i, (path, wave) in enumerate(zip(paths, audio)):
        rate = 8000 if i == 3 else 16000
        soundfile.write(path, wave[::2] / 10 if rate == 8000 else wave / 10, rate, subtype="PCM_16")
    (batch,) = batches(ds)
    assert batch["attention_mask"].sum(axis=1).tolist() == [len(w) for w in audio[:3]] + [len(audio[3][::2]) * 2]
    expected = processor(audio=soundfile.read(paths[1])[0].astype("float32"), sampling_rate=16000,
                         return_tensors="np")["input_values"][0]
    np.testing.assert_allclose(batch["input_values"][1, :len(expected)], expected, atol=1e-5)


def test_arrays_at_another_rate_are_resampled(processor):
    ds = make_dataset([np.ones(800, "float32") + np.arange(800) % 7], ["A"], processor, batch_size=1,
                      sampling_rate=8000)
    (batch,) = batches(ds)
    assert batch["input_values"].shape == (1, 1600)


def test_bucketing_groups_similar_lengths(processor):
    audio = waves(16)
    lengths = [len(a) for a in audio]
    bounds = [4000, 6000]
    ds = make_dataset(audio, TEXTS * 2, processor, batch_size=2, bucket_boundaries=bounds, seed=1)
    seen = []
    for batch in batches(ds):
        rows = batch["attention_mask"].sum(axis=1)
        buckets = {int(np.searchsorted(bounds, n, side="right")) for n in rows}
        assert len(buckets) == 1, f"a batch mixes buckets: {rows}"
        assert batch["input_values"].shape[1] == rows.max()
        seen += rows.tolist()
    assert sorted(seen) == sorted(lengths)

    auto = auto_bucket_boundaries(lengths, batch_size=2)
    assert 2 <= len(auto) <= 7 and auto == sorted(auto)
    seen = [n for b in batches(make_dataset(audio, TEXTS * 2, processor, 2, bucket_boundaries="auto"))
            for n in b["attention_mask"].sum(axis=1)]
    assert sorted(seen) == sorted(lengths)
    assert auto_bucket_boundaries(lengths[:3], batch_size=2) == []
    with pytest.raises(ValueError, match="strictly increasing"):
        make_dataset(audio, TEXTS * 2, processor, 2, bucket_boundaries=[6000, 4000])


def test_shuffling_is_seeded_and_new_every_epoch(processor):
    audio = waves()

    def order(ds):
        return [n for b in batches(ds) for n in b["attention_mask"].sum(axis=1).tolist()]

    lengths = [len(a) for a in audio]
    assert order(make_dataset(audio, TEXTS, processor, 2, shuffle=False)) == lengths
    seeded = make_dataset(audio, TEXTS, processor, 2, seed=3)
    first, second = order(seeded), order(seeded)
    assert sorted(first) == sorted(lengths) and first != lengths and first != second
    assert order(make_dataset(audio, TEXTS, processor, 2, seed=3)) == first


def test_drop_remainder_padding_multiple_and_unlabelled(processor):
    audio = waves(5)
    assert len(batches(make_dataset(audio, TEXTS[:5], processor, 2, drop_remainder=True))) == 2
    for batch in batches(make_dataset(audio, TEXTS[:5], processor, 2, pad_to_multiple_of=1000,
                                      label_pad_to_multiple_of=16)):
        assert batch["input_values"].shape[1] % 1000 == 0
        assert batch["attention_mask"].shape == batch["input_values"].shape
        assert batch["labels"].shape[1] == 16 and (batch["labels"][:, -1] == -100).all()
        lengths = batch["attention_mask"].sum(axis=1)
        assert all(not row[n:].any() for row, n in zip(batch["input_values"], lengths))
    unlabelled = make_dataset(audio, None, processor, 2)
    assert set(unlabelled.element_spec) == {"input_values", "attention_mask"}


def test_argument_errors(processor, tiny_config):
    with pytest.raises(ValueError, match="3 audio examples but 2 transcripts"):
        make_dataset(waves(3), TEXTS[:2], processor, 2)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(waves(2), TEXTS[:2], processor, 0)
    # tiny_config has 12 ids; the fixture tokenizer has 32.
    with pytest.raises(ValueError, match=r"transcript 0 \('HELLO WORLD'\).*\[0, 12\)"):
        make_dataset(waves(2), TEXTS[:2], processor, 2, config=tiny_config)


def test_labels_longer_than_frames_warn_once(processor, tiny_config):
    config = tiny_config.copy(vocab_size=32)
    audio = [np.random.default_rng(0).standard_normal(400).astype("float32")] * 3  # 4 frames each
    ds = make_dataset(audio, ["HELLO WORLD", "WE TRIED", "NO"], processor, 3, config=config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches(ds)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "labels longer than the output frames" in messages[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches(make_dataset(audio, ["HELLO WORLD"] * 3, processor, 3, config=config.copy(ctc_zero_infinity=True)))
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def _unknown_warnings(texts, processor):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_dataset(waves(len(texts)), texts, processor, 2)
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "<unk>" in str(w.message)]


def test_lower_case_transcripts_warn_once_with_the_fix(processor):
    """LibriSpeech vocabularies are upper case: lower-case transcripts would all be <unk> labels."""
    lower = [t.lower() for t in TEXTS]
    messages = _unknown_warnings(lower, processor)
    assert len(messages) == 1, messages
    assert "100% of the label characters map to '<unk>'" in messages[0]
    assert "[t.upper() for t in transcripts]" in messages[0]
    assert _unknown_warnings(TEXTS, processor) == []
    # A few unknown characters are not "most": no warning. Most, with no case fix: names them.
    assert _unknown_warnings(["HELLO WORLD", "A CAT é"], processor) == []
    (message,) = _unknown_warnings(["éé ßß", "ßé"], processor)
    assert "'é'" in message and "'ß'" in message and ".upper()" not in message


def test_fit_takes_the_dataset(processor, tiny_config):
    keras.utils.set_random_seed(0)
    model = TFHubertForCTC(tiny_config.copy(vocab_size=len(processor.tokenizer)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    audio = [np.random.default_rng(i).standard_normal(4000 + 800 * i).astype("float32") for i in range(8)]
    ds = make_dataset(audio, ["AB CD", "EF", "G H", "IJ", "KLM", "N O", "PQ", "RS"], processor, 4,
                      bucket_boundaries=[6000], config=model)
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.isfinite(model.evaluate(ds, verbose=0))
    logits = model.predict(make_dataset(audio, None, processor, 4, shuffle=False), verbose=0)["logits"]
    assert logits.shape[0] == 8


def test_read_librispeech(tmp_path):
    chapter = tmp_path / "corpus" / "19" / "198"
    chapter.mkdir(parents=True)
    for utt in ("0001", "0000"):
        soundfile.write(str(chapter / f"19-198-{utt}.flac"), np.zeros(800), 16000)
    (chapter / "19-198.trans.txt").write_text("19-198-0000 HELLO WORLD\n19-198-0001 A CAT\n")
    paths, texts = read_librispeech(tmp_path / "corpus")
    assert [os.path.basename(p) for p in paths] == ["19-198-0000.flac", "19-198-0001.flac"]
    assert texts == ["HELLO WORLD", "A CAT"]
    (chapter / "19-198.trans.txt").write_text("19-198-0002 MISSING\n")
    with pytest.raises(FileNotFoundError, match="19-198-0002"):
        read_librispeech(tmp_path / "corpus")
