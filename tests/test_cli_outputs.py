"""`hubert-tf` output paths (issue 17): same-named inputs get distinct outputs (their relative paths),
impossible requests are refused before any compute (naming the files), missing output directories are
created up front, and a `.npy` output for one input is a file."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from hubert_tf.cli_outputs import DIRECTORY, FILE, STDOUT, input_keys, plan_outputs
from test_cli import hubert_tf_cli, write_wav

FRAMES = {1.5: 74, 2.2: 109}  # frames of the tiny ASR model (320 samples per frame) for each duration


@pytest.fixture(scope="module")
def same_names(tmp_path_factory):
    """a/x.wav (1.5 s) and b/x.wav (2.2 s): two inputs with the same base name."""
    root = tmp_path_factory.mktemp("same_names")
    return root, [write_wav(root / "a" / "x.wav", 1.5, 0), write_wav(root / "b" / "x.wav", 2.2, 1)]


def without_tensorflow(*argv, cwd=None):
    """Runs the CLI's `main` in a subprocess and says whether TensorFlow was imported: a refusal must
    come before it (importing TensorFlow takes seconds)."""
    code = ("import sys; from hubert_tf.cli import main; status = main(sys.argv[1:]); "
            "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow', file=sys.stderr); "
            "sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                            timeout=120)
    lines = result.stderr.strip().splitlines()
    return result.returncode, result.stdout, lines[:-1], lines[-1] == "no tensorflow"


# ----------------------------------------------------------------------------------------- planning
def test_input_keys_are_base_names_unless_they_collide():
    assert input_keys(["d/a.wav", "e/b.wav"], keep_extension=False) == ["a", "b"]
    assert input_keys(["d/a.wav", "e/b.wav"], keep_extension=True) == ["a.wav", "b.wav"]
    # Same base name: the paths relative to the inputs' common directory, for every input.
    assert input_keys(["s/a/x.wav", "s/b/x.wav", "s/b/y.wav"], keep_extension=False) == ["a/x", "b/x", "b/y"]
    assert input_keys(["s/a/x.wav", "s/b/x.wav"], keep_extension=True) == ["a/x.wav", "b/x.wav"]
    # Same stem, different extensions: the extension stays.
    assert input_keys(["x.wav", "x.flac"], keep_extension=False) == ["x.wav", "x.flac"]
    with pytest.raises(ValueError, match=r"the same file is given twice \(x.wav and ./x.wav\)"):
        input_keys(["x.wav", "./x.wav"], keep_extension=False)


def test_plan_outputs_decides_up_front(tmp_path):
    a, b = str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.wav")
    assert plan_outputs([a], None, suffix=".srt", one_file_for_all=False).mode == STDOUT
    with pytest.raises(ValueError, match="2 inputs make 2 '.srt' files: give -o DIRECTORY"):
        plan_outputs([a, b], None, suffix=".srt", one_file_for_all=False)
    plan = plan_outputs([a, b], str(tmp_path / "new" / "subs"), suffix=".srt", one_file_for_all=False)
    assert plan.mode == DIRECTORY and plan.per_input == {a: str(tmp_path / "new/subs/a/x.srt"),
                                                         b: str(tmp_path / "new/subs/b/x.srt")}
    assert os.path.isdir(tmp_path / "new" / "subs" / "a") and os.path.isdir(tmp_path / "new" / "subs" / "b")
    plan = plan_outputs([a, b], str(tmp_path / "deep" / "er" / "all.txt"), suffix=".txt", one_file_for_all=True)
    assert plan.mode == FILE and os.path.isdir(tmp_path / "deep" / "er")  # the parent is created now
    plan = plan_outputs([a], str(tmp_path / "one.npy"), suffix=".layer1.npy", one_file_for_all=False)
    assert plan.mode == FILE and plan.path == str(tmp_path / "one.npy")
    with pytest.raises(ValueError, match=r"-o .*f.npy names one file but 2 inputs were given"):
        plan_outputs([a, b], str(tmp_path / "f.npy"), suffix=".layer1.npy", one_file_for_all=False)
    with pytest.raises(ValueError, match="the output would overwrite an input"):
        plan_outputs([a], a, suffix=".txt", one_file_for_all=True)
    (tmp_path / "plain").write_text("")
    with pytest.raises(NotADirectoryError, match=r"-o is not a directory \(.*plain\)"):
        plan_outputs([a, b], str(tmp_path / "plain"), suffix=".srt", one_file_for_all=False)
    with pytest.raises(OSError, match=r"cannot create the output directory: Not a directory \(.*plain/out\)"):
        plan_outputs([a, b], str(tmp_path / "plain" / "out"), suffix=".srt", one_file_for_all=False)


# ----------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("argv, words", [
    (["features", "{a}", "{b}", "--layer", "1", "--model", "m", "-o", "{root}/f.npy"],
     ["f.npy names one file but 2 inputs were given", "-o DIRECTORY"]),
    (["transcribe", "{a}", "{b}", "--model", "m", "--format", "srt"], ["2 inputs make 2 '.srt' files"]),
    (["features", "{a}", "{a}", "--layer", "1", "--model", "m"], ["the same file is given twice", "x.wav"]),
    (["transcribe", "{a}", "--model", "m", "-o", "{a}"], ["the output would overwrite an input", "x.wav"]),
    (["transcribe", "{a}", "{root}/missing.wav", "--model", "m"], ["no such file", "missing.wav"]),
])
def test_refusals_come_before_tensorflow_and_are_one_line(same_names, argv, words):
    root, (a, b) = same_names
    argv = [arg.format(a=a, b=b, root=root) for arg in argv]
    code, out, err, no_tensorflow = without_tensorflow(*argv)
    assert code == 1 and out == "" and len(err) == 1 and err[0].startswith("hubert-tf: error: "), err
    assert all(word in err[0] for word in words), err
    assert no_tensorflow, "the refusal came after TensorFlow (and the model) loaded"
    assert not os.path.exists(os.path.join(root, "f.npy"))


# ----------------------------------------------------------------------------------------- the real command
def test_features_into_a_directory_keep_same_named_inputs_apart(asr_dir, same_names, tmp_path):
    _, (a, b) = same_names
    out = tmp_path / "new" / "features"  # a missing parent: created up front
    result = hubert_tf_cli("features", a, b, "--layer", "1", "--model", asr_dir, "-o", out)
    assert result.returncode == 0, result.stderr
    written = result.stdout.split()
    assert written == [str(out / "a" / "x.layer1.npy"), str(out / "b" / "x.layer1.npy")]
    assert [np.load(p).shape for p in written] == [(FRAMES[1.5], 16), (FRAMES[2.2], 16)]


def test_features_h5_keys_and_single_npy_file(asr_dir, same_names, tmp_path):
    _, (a, b) = same_names
    h5_path = tmp_path / "missing" / "dir" / "all.h5"
    result = hubert_tf_cli("features", a, b, "--layer", "1", "--model", asr_dir, "-o", h5_path)
    assert result.returncode == 0 and result.stdout.strip() == str(h5_path), result.stderr
    with h5py.File(h5_path) as f:  # keyed by the relative paths: both kept
        assert f["a/x.wav"].shape == (FRAMES[1.5], 16) and f["b/x.wav"].shape == (FRAMES[2.2], 16)
        first = f["a/x.wav"][()]
    assert not [n for n in os.listdir(h5_path.parent) if n != "all.h5"]  # no temporary file left
    from hubert_tf.cli import main  # in this process: one console-script run per test is enough

    npy = tmp_path / "other" / "f.npy"
    assert main(["features", a, "--layer", "1", "--model", asr_dir, "-o", str(npy), "--quiet"]) == 0
    assert npy.is_file()  # a file, not a directory
    np.testing.assert_allclose(np.load(npy), first, atol=1e-6)


def test_subtitles_of_same_named_inputs_go_to_their_relative_paths(asr_dir, same_names, tmp_path):
    _, (a, b) = same_names
    out = tmp_path / "subs"
    result = hubert_tf_cli("transcribe", a, b, "--model", asr_dir, "--format", "srt", "-o", out, "--quiet")
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.srt")) == ["a/x.srt", "b/x.srt"]
    # The tiny random model may say nothing; when it does, each file is a subtitle file.
    for path in out.rglob("*.srt"):
        text = path.read_text()
        assert text == "" or text.startswith("1\n00:00:")
