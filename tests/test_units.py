"""hubert_tf.units: MFCC + deltas, mini-batch k-means and its file, layer features, discrete units (Python
API and the `hubert-tf units` command)."""

import argparse

import numpy as np
import pytest
import soundfile

from hubert_tf import extract_features
from hubert_tf.processing.normalize import normalize

from conftest import fixture_dir
from hubert_tf import TFHubertForCTC, TFHubertModel
from hubert_tf.units import (
    KMeans,
    add_units_parser,
    audio_to_units,
    compute_deltas,
    dedup_units,
    extract_layer_features,
    fit_layer_kmeans,
    fit_mfcc_kmeans,
    mfcc,
    mfcc_labels,
    read_units,
    run_units,
    units_main,
)

SR = 16000


def tone(freq, seconds=0.5, seed=0):
    t = np.arange(int(SR * seconds)) / SR
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


# ----------------------------------------------------------------------------- MFCC
def test_deltas_are_the_regression_formula():
    x = np.random.default_rng(0).standard_normal((12, 3)).astype(np.float32)
    padded = np.concatenate([x[:1], x[:1], x, x[-1:], x[-1:]])  # edges repeated
    want = np.stack([(padded[t + 3] - padded[t + 1] + 2 * (padded[t + 4] - padded[t])) / 10 for t in range(12)])
    np.testing.assert_allclose(compute_deltas(x).numpy(), want, atol=1e-6)
    ramp = np.arange(20, dtype=np.float32)[:, None] * 0.5  # slope 0.5 inside the edges
    np.testing.assert_allclose(compute_deltas(ramp).numpy()[2:-2], 0.5, atol=1e-6)


def test_mfcc_shape_and_content():
    features = mfcc(tone(440, 1.0))
    assert features.shape == (98, 39) and features.dtype == np.float32  # 1 + (16000 - 400) // 160 frames
    assert mfcc(tone(440, 0.5), deltas=False).shape == (48, 13)
    np.testing.assert_array_equal(features, mfcc(tone(440, 1.0)))
    # A steady tone: deltas ~0 inside; two different tones: different cepstra.
    assert np.abs(features[5:-5, 13:]).max() < 0.1 * np.abs(features[:, :13]).max()
    assert np.linalg.norm(features[:, :13].mean(0) - mfcc(tone(3000, 1.0))[:, :13].mean(0)) > 1.0
    with pytest.raises(ValueError, match="fewer than one 400-sample window"):
        mfcc(np.zeros(300, np.float32))
    with pytest.raises(ValueError, match="mono"):
        mfcc(np.zeros((2, 16000), np.float32))


# ----------------------------------------------------------------------------- k-means
def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, (5, 4))
    truth = rng.integers(0, 5, 2000)
    return centers[truth] + rng.normal(0, 0.5, (2000, 4)), truth


def test_kmeans_recovers_blobs_deterministically(tmp_path):
    x, truth = blobs()
    km = KMeans(5, batch_size=256, seed=3, metadata={"features": "toy"}).fit(x)
    labels = km.predict(x)
    # Each cluster is exactly one blob.
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
    assert len(pairs) == 5 and len({a for a, _ in pairs}) == 5
    again = KMeans(5, batch_size=256, seed=3).fit(x)
    np.testing.assert_array_equal(km.centroids, again.centroids)
    # Plain .npz file: centroids + JSON metadata, read without pickle.
    path = km.save(tmp_path / "km")
    assert path.endswith("km.npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"centroids", "metadata"}
    loaded = KMeans.load(path)
    np.testing.assert_array_equal(loaded.centroids, km.centroids)
    assert loaded.metadata == {"features": "toy"} and loaded.n_clusters == 5
    assert loaded.inertia == pytest.approx(km.inertia)
    np.testing.assert_array_equal(loaded.predict(x), labels)
    np.save(tmp_path / "plain.npy", km.centroids)  # a bare centroid array loads too
    np.testing.assert_array_equal(KMeans.load(tmp_path / "plain.npy").predict(x), labels)


def test_kmeans_errors(tmp_path):
    x, _ = blobs()
    with pytest.raises(ValueError, match="not fitted"):
        KMeans(3).predict(x)
    with pytest.raises(ValueError, match="cannot make 10 clusters"):
        KMeans(10).fit(x[:5])
    with pytest.raises(ValueError, match=r"shape \[frames, 4\]"):
        KMeans(3).fit(x).predict(x[:, :3])
    with pytest.raises(FileNotFoundError):
        KMeans.load(tmp_path / "missing.npz")


def test_mfcc_kmeans_targets_separate_sounds():
    corpus = [tone(300, seed=i) for i in range(3)] + [tone(3000, seed=i) for i in range(3)]
    km = fit_mfcc_kmeans(corpus, n_clusters=2, seed=0)
    assert km.metadata == {"features": "mfcc", "label_rate": 100} and km.dim == 39
    labels = mfcc_labels(corpus, km)
    assert [len(seq) for seq in labels] == [48] * 6
    low = {int(np.bincount(seq).argmax()) for seq in labels[:3]}
    high = {int(np.bincount(seq).argmax()) for seq in labels[3:]}
    assert len(low) == len(high) == 1 and low != high
    padded = mfcc_labels(corpus[:2], km, pad_to=50)
    assert padded.shape == (2, 50) and (padded[:, 48:] == -100).all()


# ----------------------------------------------------------------------------- layer features and units
@pytest.fixture(scope="module")
def model():
    return TFHubertModel.from_pretrained(fixture_dir("base_style"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("audio")
    paths = []
    for i, freq in enumerate([200, 900, 2500]):
        path = str(directory / f"utt{i}.wav")
        soundfile.write(path, tone(freq, 0.4, seed=i), SR)
        paths.append(path)
    return paths


def test_extract_layer_features(model, corpus):
    """Units see what `extract_features` and the model see: the processor's normalisation, then the body."""
    audio = soundfile.read(corpus[0], dtype="float32")[0]
    hidden = model(normalize(audio)[None], output_hidden_states=True).hidden_states
    for layer in range(model.config.num_hidden_layers + 1):
        features = extract_layer_features(model, corpus[0], layer)  # from the file
        np.testing.assert_allclose(features, hidden[layer][0].numpy(), atol=1e-5)
        np.testing.assert_array_equal(features, extract_features(corpus[0], model, layer=layer))
    np.testing.assert_allclose(extract_layer_features(model, audio, -1), hidden[-1][0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\]"):
        extract_layer_features(model, audio, 3)


@pytest.fixture(scope="module")
def kmeans_file(model, corpus, tmp_path_factory):
    km = fit_layer_kmeans(model, corpus, layer=1, n_clusters=6, seed=0)
    assert km.metadata["layer"] == 1 and km.metadata["label_rate"] == 200.0 and km.dim == 32
    return km.save(tmp_path_factory.mktemp("km") / "km6.npz")


def test_audio_to_units(model, corpus, kmeans_file, tmp_path):
    units = audio_to_units(corpus, model, 1, kmeans_file)
    km = KMeans.load(kmeans_file)
    for path, seq in zip(corpus, units):
        assert seq.dtype == np.int64 and seq.min() >= 0 and seq.max() < 6
        np.testing.assert_array_equal(seq, km.predict(extract_layer_features(model, path, 1)))
    deduped = audio_to_units(corpus, model, 1, km, dedup=True, output=tmp_path / "units.tsv")
    for seq, short in zip(units, deduped):
        np.testing.assert_array_equal(short, dedup_units(seq))
        assert (short[1:] != short[:-1]).all()
    written = read_units(tmp_path / "units.tsv")
    assert list(written) == corpus
    for seq, short in zip(written.values(), deduped):
        np.testing.assert_array_equal(seq, short)
    # One waveform in, one sequence out; a model directory works as well as a model.
    audio = soundfile.read(corpus[0], dtype="float32")[0]
    np.testing.assert_array_equal(audio_to_units(audio, fixture_dir("base_style"), 1, km)[0], units[0])
    with pytest.raises(ValueError, match="32 \\(hidden_size\\)"):
        audio_to_units(audio, model, 1, KMeans(2).fit(np.random.default_rng(0).normal(size=(10, 8))))
    np.testing.assert_array_equal(dedup_units(np.array([5, 5, 3, 3, 3, 5])), [5, 3, 5])


def test_units_command(model, corpus, kmeans_file, tmp_path, capsys):
    out = tmp_path / "units.tsv"
    status = units_main([*corpus, "--model", fixture_dir("base_style"), "--layer", "1", "--kmeans",
                         kmeans_file, "--output", str(out)])
    assert status == 0
    expected = audio_to_units(corpus, model, 1, kmeans_file)
    for seq, want in zip(read_units(out).values(), expected):
        np.testing.assert_array_equal(seq, want)
    # Mounted as a subcommand (the lead's `hubert-tf` parser): --layer from the k-means file, stdout output.
    parser = argparse.ArgumentParser(prog="hubert-tf")
    add_units_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["units", corpus[0], "--model", fixture_dir("base_style"), "--kmeans", kmeans_file,
                              "--dedup"])
    assert args.func is run_units and args.layer is None
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    name, units = line.split("\t")
    assert name == corpus[0]
    np.testing.assert_array_equal([int(u) for u in units.split()], dedup_units(expected[0]))
    # Errors are reported with status 1.
    assert units_main([str(tmp_path / "missing.wav"), "--model", fixture_dir("base_style"), "--kmeans",
                       kmeans_file]) == 1
    assert "hubert-tf: error: no such file (" in capsys.readouterr().err


def test_heads_features_equal_the_bare_model(model, corpus):
    """Any HuBERT model works for features: a CTC checkpoint's body gives the bare model's features."""
    ctc = TFHubertForCTC.from_pretrained(fixture_dir("base_style"))
    np.testing.assert_array_equal(extract_layer_features(ctc, corpus[1], 2),
                                  extract_layer_features(model, corpus[1], 2))
