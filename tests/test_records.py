"""TFRecord shards: waveforms + transcripts written as int16 / FLAC shards and read back through tf.data
give the examples `make_dataset` gives (up to 16-bit quantisation), every example once per epoch, in
length buckets; a failed write leaves no shard."""

import os

import numpy as np
import pytest

from hubert_tf.data import make_dataset
from hubert_tf.processing import (
    HubertCTCTokenizer,
    HubertFeatureExtractor,
    HubertProcessor,
)
from hubert_tf.records import tfrecord_dataset, write_tfrecord_shards

VOCAB = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "C": 5}
TEXTS = ["AB", "A", "B A", "CAB", "C", "AA B", "BC", "A C B"]


@pytest.fixture(scope="module")
def processor():
    return HubertProcessor(HubertFeatureExtractor(return_attention_mask=True, do_normalize=True),
                           HubertCTCTokenizer(VOCAB))


def waves():
    return [0.1 * np.random.default_rng(i).standard_normal(800 + 300 * i).astype("float32") for i in range(len(TEXTS))]


def by_length(batches):
    """{number of valid samples: (input_values, labels)} over all examples of `batches`."""
    out = {}
    for batch in batches:
        for x, mask, labels in zip(batch["input_values"].numpy(), batch["attention_mask"].numpy(),
                                   batch["labels"].numpy()):
            n = int(mask.sum())
            assert n not in out
            out[n] = (x[:n], labels[labels != -100])
    return out


@pytest.mark.parametrize("audio_format", ["int16", "flac"])
def test_shards_read_back_as_make_dataset_gives(processor, tmp_path, audio_format):
    paths = write_tfrecord_shards(waves(), tmp_path, transcripts=TEXTS, processor=processor, num_shards=3,
                                  prefix="train", audio_format=audio_format)
    assert [os.path.basename(p) for p in paths] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)  # no temporary files
    ours = by_length(tfrecord_dataset(str(tmp_path / "train-*.tfrecord"), batch_size=3, seed=0))
    reference = by_length(make_dataset(waves(), TEXTS, processor, batch_size=3, shuffle=False))
    assert sorted(ours) == sorted(reference) and len(ours) == len(TEXTS)  # every example, once
    for n, (x, labels) in reference.items():
        np.testing.assert_array_equal(ours[n][1], labels)
        np.testing.assert_allclose(ours[n][0], x, atol=2e-3)  # 16-bit PCM of audio with std 0.1 (none clipped)


def test_buckets_shuffling_and_sharding(processor, tmp_path):
    write_tfrecord_shards(waves(), tmp_path, transcripts=TEXTS, processor=processor, num_shards=4)
    pattern = str(tmp_path / "*.tfrecord")
    bucketed = list(tfrecord_dataset(pattern, batch_size=2, bucket_boundaries=[1700, 2600], seed=1))
    for batch in bucketed:  # a batch holds examples of one bucket only
        lengths = batch["attention_mask"].numpy().sum(axis=1)
        assert len({int(np.searchsorted([1700, 2600], n, side="right")) for n in lengths}) == 1
    assert sum(len(b["input_values"]) for b in bucketed) == len(TEXTS)
    order = lambda ds: [int(m.sum()) for b in ds for m in b["attention_mask"].numpy()]
    assert order(tfrecord_dataset(pattern, 2, seed=3)) == order(tfrecord_dataset(pattern, 2, seed=3))
    assert order(tfrecord_dataset(pattern, 2, shuffle=False)) == order(tfrecord_dataset(pattern, 2, shuffle=False))
    # File sharding (AutoShardPolicy.FILE): each of two workers reads every other shard; together, all.
    shards = sorted(str(tmp_path / name) for name in os.listdir(tmp_path))
    parts = [order(tfrecord_dataset(shards[rank::2], 2, shuffle=False)) for rank in range(2)]
    assert all(parts) and sorted(parts[0] + parts[1]) == sorted(order(tfrecord_dataset(pattern, 2, shuffle=False)))


def test_bad_arguments_and_failed_writes(processor, tmp_path):
    with pytest.raises(ValueError, match="no TFRecord shard matches"):
        tfrecord_dataset(str(tmp_path / "none-*.tfrecord"), 2)
    with pytest.raises(ValueError, match="transcripts need a processor"):
        write_tfrecord_shards(waves(), tmp_path, transcripts=TEXTS)
    with pytest.raises(ValueError, match="got 8 audio examples but 2 transcripts/labels"):
        write_tfrecord_shards(waves(), tmp_path, labels=[[1], [2]])
    with pytest.raises(ValueError, match="audio_format must be one of"):
        write_tfrecord_shards(waves(), tmp_path, audio_format="mp3")
    with pytest.raises(Exception):  # an unreadable file in the middle of the corpus
        write_tfrecord_shards(waves()[:3] + [str(tmp_path / "missing.wav")], tmp_path / "out", num_shards=2)
    assert os.listdir(tmp_path / "out") == []  # nothing half-written
    # Unit labels instead of transcripts.
    write_tfrecord_shards(waves()[:2], tmp_path / "units", labels=[[7, 7, 3], [1]])
    batch = next(iter(tfrecord_dataset(str(tmp_path / "units" / "*.tfrecord"), 2, shuffle=False)))
    assert batch["labels"].numpy().tolist() == [[7, 7, 3], [1, -100, -100]]


def test_prepare_command_from_a_manifest_with_unit_labels(tmp_path):
    import wave

    from hubert_tf.cli import main
    from hubert_tf.units import write_manifest

    names, lengths = [], []
    for i, wave_ in enumerate(waves()[:3]):
        name = f"u{i}.wav"
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes((wave_ * 32767).astype("<i2").tobytes())
        names.append(name)
        lengths.append(len(wave_))
    write_manifest(tmp_path / "train.tsv", tmp_path, names, lengths)
    (tmp_path / "train.km").write_text("1 1 2\n3\n4 5\n")
    out = tmp_path / "records"
    assert main(["prepare", str(tmp_path / "train.tsv"), str(out), "--labels", str(tmp_path / "train.km"),
                 "--num-shards", "2", "--audio-format", "flac"]) == 0
    batch = next(iter(tfrecord_dataset(str(out / "train-*.tfrecord"), 3, shuffle=False)))
    got = {int(m.sum()): labels[labels != -100].tolist()
           for m, labels in zip(batch["attention_mask"].numpy(), batch["labels"].numpy())}
    assert got == {lengths[0]: [1, 1, 2], lengths[1]: [3], lengths[2]: [4, 5]}
    assert main(["prepare", str(tmp_path / "train.tsv"), str(out), "--labels", str(tmp_path / "train.tsv")]) == 1
