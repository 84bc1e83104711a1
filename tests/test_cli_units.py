"""`hubert-tf kmeans` then `hubert-tf units` end to end (issue 17), and `units` sharing the CLI's options
and errors (files and the k-means file checked before a model loads)."""

import json

import numpy as np
import pytest

from test_cli import hubert_tf_cli, write_wav
from test_cli_outputs import FRAMES, without_tensorflow


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    return [write_wav(root / "a.wav", 1.5, 0), write_wav(root / "b.wav", 2.2, 1)]


def test_kmeans_then_units_on_a_tiny_model(asr_dir, clips, tmp_path):
    from hubert_tf.units import KMeans, audio_to_units

    km_path = tmp_path / "new" / "km4"  # no .npz: KMeans.save adds it; the parent is created
    result = hubert_tf_cli("kmeans", *clips, "--model", asr_dir, "--layer", "1", "--clusters", "4", "-o", km_path)
    assert result.returncode == 0 and result.stdout.strip() == f"{km_path}.npz", result.stderr
    assert result.stderr == ""  # no start-up lines, no notice about the CTC head's unused weights
    km = KMeans.load(f"{km_path}.npz")
    assert km.centroids.shape == (4, 16) and km.metadata["layer"] == 1 and km.metadata["features"] == "hubert"
    assert km.metadata["model"] == asr_dir and km.metadata["label_rate"] == 50.0
    # `units` takes the model and the layer from the k-means file.
    out = tmp_path / "units.txt"
    result = hubert_tf_cli("units", *clips, "--kmeans", f"{km_path}.npz", "-o", out, "--quiet")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    assert [name for name, _ in lines] == clips
    units = [np.array(text.split(), np.int64) for _, text in lines]
    assert [u.size for u in units] == [FRAMES[1.5], FRAMES[2.2]] and all(u.max() < 4 for u in units)
    expected = audio_to_units(clips, asr_dir, 1, km)  # the library's units, in this process
    assert all(np.array_equal(u, e) for u, e in zip(units, expected))


def test_mfcc_kmeans_then_units_as_jsonl(clips, tmp_path, capsys):
    from hubert_tf.cli import main  # in this process: the console script runs in the test above

    km_path = tmp_path / "mfcc.npz"
    assert main(["kmeans", *clips, "--mfcc", "-k", "3", "-o", str(km_path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(km_path)
    assert main(["units", *clips, "--kmeans", str(km_path), "--format", "jsonl"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    # 100 Hz MFCC frames: 1 + (samples - 400) // 160.
    assert [r["file"] for r in rows] == clips and [len(r["units"]) for r in rows] == [148, 218] and err == ""
    assert {u for r in rows for u in r["units"]} <= {0, 1, 2}


@pytest.mark.parametrize("argv, message", [
    (["units", "{a}", "{root}/missing.wav", "--kmeans", "{km}"], "no such file ({root}/missing.wav)"),
    (["units", "{a}", "--kmeans", "{root}/none.npz", "--model", "m", "--layer", "1"], "{root}/none.npz"),
    (["units", "{a}", "--kmeans", "{a}", "--model", "m", "--layer", "1"], "not a k-means file"),
    (["kmeans", "{a}", "--model", "m", "-k", "2", "-o", "km.npz"], "--model needs --layer"),
])
def test_units_and_kmeans_check_before_loading_a_model(clips, tmp_path, argv, message):
    root = str(tmp_path)
    np.save(tmp_path / "km.npy", np.zeros((2, 16), np.float32))
    km = str(tmp_path / "km.npy")
    argv = [arg.format(a=clips[0], root=root, km=km) for arg in argv]
    code, out, err, no_tensorflow = without_tensorflow(*argv)
    assert code == 1 and out == "" and len(err) == 1 and err[0].startswith("hubert-tf: error: "), err
    assert message.format(root=root) in err[0] and no_tensorflow, err


def test_units_reads_a_fairseq_km_bin_and_checks_its_dims_against_the_model(asr_dir, clips, capsys):
    from conftest import fixture_dir

    from hubert_tf.cli import main

    km_bin = f"{fixture_dir('units')}/km.bin"  # scikit-learn MiniBatchKMeans, 5 x 6 centroids
    assert main(["units", *clips, "--kmeans", km_bin, "--model", asr_dir, "--layer", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [
        "hubert-tf: error: the k-means centroids have 6 dims but the model's layer features have 16 (hidden_size): "
        f"cluster features of this model ({km_bin})"]
