"""Sharded HuBERT targets in fairseq's layout: features dumped by shard (.npy + .len), k-means on a
--percent sample of the dumps, labels per shard (.km) — the same labels as the in-memory path
(`fit_mfcc_kmeans` + `mfcc_labels`) on a small corpus; and every malformed file gives a ValueError
naming it."""

import os
import wave

import numpy as np
import pytest

from hubert_tf.units import (
    KMeans,
    dump_features,
    dump_labels,
    fit_mfcc_kmeans,
    learn_kmeans,
    load_shard,
    merge_labels,
    mfcc_labels,
    read_km_labels,
    read_manifest,
    sample_features,
    shard_range,
    write_manifest,
)

NSHARD = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """7 utterances of 0.2-0.5 s (tones in noise) as 16-bit WAV files, and their fairseq manifest."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    names, lengths = [], []
    for i in range(7):
        n = int(rng.integers(3200, 8000))
        t = np.arange(n) / 16000
        x = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(n)
        name = f"spk{i % 2}/utt{i}.wav"
        os.makedirs(root / f"spk{i % 2}", exist_ok=True)
        with wave.open(str(root / name), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
        names.append(name)
        lengths.append(n)
    manifest = root / "train.tsv"
    write_manifest(manifest, root, names, lengths)
    return str(manifest), [str(root / name) for name in names]


def test_shard_ranges_cover_the_corpus_once():
    for total in (0, 1, 7, 100):
        for nshard in (1, 3, 8):
            ranges = [shard_range(total, nshard, r) for r in range(nshard)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 3\)"):
        shard_range(7, 3, 3)


def test_sharded_labels_equal_the_in_memory_labels(corpus, tmp_path):
    manifest, paths = corpus
    assert read_manifest(manifest) == paths
    feat_dir, lab_dir = tmp_path / "feat", tmp_path / "labels"
    for rank in range(NSHARD):
        dump_features(manifest, "mfcc", feat_dir, "train", NSHARD, rank)
    assert sorted(os.listdir(feat_dir)) == sorted(f"train_{r}_3.{e}" for r in range(3) for e in ("npy", "len"))
    x, lengths = load_shard(feat_dir, "train", NSHARD, 1)
    assert x.dtype == np.float32 and x.shape[1] == 39 and len(lengths) == 3  # utterances 2, 3, 4

    km = learn_kmeans(feat_dir, "train", NSHARD, n_clusters=8, percent=-1, seed=0)
    for rank in range(NSHARD):
        dump_labels(feat_dir, "train", km, NSHARD, rank, lab_dir)
    sharded = read_km_labels(merge_labels(lab_dir, "train", NSHARD))

    in_memory_km = fit_mfcc_kmeans(paths, n_clusters=8, seed=0)
    np.testing.assert_allclose(km.centroids, in_memory_km.centroids, rtol=1e-6, atol=1e-6)
    in_memory = mfcc_labels(paths, in_memory_km)
    assert len(sharded) == len(in_memory) == 7
    for ours, theirs in zip(sharded, in_memory):
        np.testing.assert_array_equal(ours, theirs)
    assert len(np.unique(np.concatenate(sharded))) > 3  # a real clustering, not one unit


def test_percent_samples_whole_utterances_of_every_shard(corpus, tmp_path):
    manifest, _ = corpus
    for rank in range(NSHARD):
        dump_features(manifest, "mfcc", tmp_path, "train", NSHARD, rank)
    shards = [load_shard(tmp_path, "train", NSHARD, r) for r in range(NSHARD)]
    every = sample_features(tmp_path, "train", NSHARD, -1)
    assert every.shape[0] == sum(sum(lengths) for _, lengths in shards)
    half = sample_features(tmp_path, "train", NSHARD, 0.5, seed=1)
    assert half.dtype == np.float32
    # ceil(50%) of each shard's 2, 3, 2 utterances: 1 + 2 + 1 utterances, each whole.
    rows = {tuple(row) for row in half.tolist()}
    utterances = []
    for x, lengths in shards:
        start = 0
        for n in lengths:
            utterance = np.asarray(x[start:start + n])
            start += n
            inside = sum(tuple(row) in rows for row in utterance.tolist())
            assert inside in (0, n), "an utterance was sampled in part"
            utterances.append(inside == n)
    assert sum(utterances) == 4
    np.testing.assert_array_equal(half, sample_features(tmp_path, "train", NSHARD, 0.5, seed=1))  # reproducible
    with pytest.raises(ValueError, match=r"percent must be in \(0, 1\]"):
        sample_features(tmp_path, "train", NSHARD, 1.5)


def test_bad_shards_and_labels_name_the_file(corpus, tmp_path):
    manifest, _ = corpus
    dump_features(manifest, "mfcc", tmp_path, "train", 1, 0)
    len_path = tmp_path / "train_0_1.len"
    good = len_path.read_text()
    len_path.write_text(good + "5\n")
    with pytest.raises(ValueError, match=r"train_0_1\.len: lengths add up to \d+ frames but .*train_0_1\.npy has"):
        load_shard(tmp_path, "train", 1, 0)
    len_path.write_text("12\nabc\n")
    with pytest.raises(ValueError, match=r"train_0_1\.len: expected one non-negative frame count per line"):
        load_shard(tmp_path, "train", 1, 0)
    len_path.write_text(good)
    (tmp_path / "train_0_1.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"train_0_1\.npy: not a feature dump"):
        load_shard(tmp_path, "train", 1, 0)
    bad_km = tmp_path / "bad.km"
    bad_km.write_text("1 2 3\n4 x\n")
    with pytest.raises(ValueError, match=r"bad\.km:2: expected space-separated cluster ids"):
        read_km_labels(bad_km)
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text("/root\na.wav\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: expected '<relative path>\\t<number of samples>'"):
        read_manifest(bad_tsv)
    with pytest.raises(ValueError, match=r"x\.wav: features of shape \(5,\)"):
        dump_features(["x.wav"], lambda path: np.zeros(5), tmp_path / "f", "train")
    assert not (tmp_path / "f" / "train_0_1.npy").exists()  # nothing half-written


def test_dim_mismatch_between_features_and_kmeans(corpus, tmp_path):
    manifest, _ = corpus
    dump_features(manifest, "mfcc", tmp_path, "train", 1, 0)
    km = KMeans(2, seed=0).fit(np.random.default_rng(0).standard_normal((20, 3)))
    with pytest.raises(ValueError, match=r"train_0_1\.npy: features of dim 39 but the k-means has 3"):
        dump_labels(tmp_path, "train", km, 1, 0, tmp_path / "labels")


# ----------------------------------------------------------------------------- scikit-learn km.bin
KM_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "units")


@pytest.mark.parametrize("name", ["km.bin", "km_plain.pkl"], ids=["joblib", "plain_pickle"])
def test_km_bin_centres_equal_what_scikit_learn_loads(name):
    """km.bin written by tests/fixtures/units/make_km_bin.py (scikit-learn 1.9.1, joblib 1.6.0);
    km_centers.npy / km_predict.npy are what scikit-learn's own loading gave."""
    from hubert_tf.units import read_km_bin

    km = read_km_bin(os.path.join(KM_FIXTURES, name))
    np.testing.assert_array_equal(km.centroids, np.load(os.path.join(KM_FIXTURES, "km_centers.npy")))
    inputs = np.load(os.path.join(KM_FIXTURES, "km_inputs.npy"))
    np.testing.assert_array_equal(km.predict(inputs), np.load(os.path.join(KM_FIXTURES, "km_predict.npy")))
    assert km.metadata["class"] == "sklearn.cluster._kmeans.MiniBatchKMeans" and km.n_clusters == 5


def test_km_bin_runs_no_code_and_rejects_bad_files(tmp_path):
    import pickle

    from hubert_tf.checkpoints.formats.torch_pickle import UnsafeCheckpointError
    from hubert_tf.units import read_km_bin

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(Evil(), protocol=4))
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.bin: refusing to load global '(posix|os|nt)\.system'"):
        read_km_bin(evil)
    assert not marker.exists()

    with open(os.path.join(KM_FIXTURES, "km.bin"), "rb") as f:
        good = f.read()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"truncated\.bin: not a readable scikit-learn k-means pickle"):
        read_km_bin(truncated)
    compressed = tmp_path / "compressed.bin"
    compressed.write_bytes(b"\x78\x9c" + good[:50])  # a zlib stream, as joblib.dump(compress=3) writes
    with pytest.raises(ValueError, match=r"compressed\.bin: not an uncompressed pickle"):
        read_km_bin(compressed)
    not_km = tmp_path / "dict.bin"
    not_km.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(ValueError, match=r"dict\.bin: the pickle holds a dict, not a scikit-learn k-means"):
        read_km_bin(not_km)
