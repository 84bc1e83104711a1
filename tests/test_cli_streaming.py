"""`hubert-tf` as a Unix tool (issue 17): one JSON document or JSON Lines streamed file by file,
--skip-errors, missing files reported before the model loads, quiet start-up (no TensorFlow lines),
one clean error line (Keras' wrapper unwrapped), and a progress bar that ends at exactly 100 %."""

import json
import re
import time

import pytest

from hubert_tf.cli_common import about_file, error_message
from test_cli import hubert_tf_cli, write_wav

# What TensorFlow, absl and CUDA print at start-up when nobody silences them.
NOISE = re.compile(r"oneDNN|cuda|cuInit|absl|cpu_feature_guard|^[IWE]0000|rebuild TensorFlow", re.I | re.M)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    bad = root / "bad.wav"
    bad.write_bytes(b"RIFF....not audio at all")
    return {"one": write_wav(root / "one.wav", 1.5, 0), "two": write_wav(root / "two.wav", 2.2, 1),
            "long": write_wav(root / "long.wav", 5.0, 2), "bad": str(bad)}


def test_json_is_one_document_and_the_start_up_is_quiet(asr_dir, corpus):
    result = hubert_tf_cli("transcribe", corpus["one"], corpus["two"], "--model", asr_dir, "--format", "json",
                           "--timestamps", "word")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # what json.load accepts: one list
    assert [d["file"] for d in document] == [corpus["one"], corpus["two"]]
    assert all(isinstance(d["text"], str) and isinstance(d["chunks"], list) for d in document)
    assert result.stderr == "", result.stderr  # no TensorFlow / CUDA / absl start-up lines, no bar


def test_jsonl_streams_and_skip_errors_goes_on(asr_dir, corpus):
    result = hubert_tf_cli("transcribe", corpus["one"], corpus["bad"], corpus["two"], "--model", asr_dir,
                           "--format", "jsonl", "--skip-errors")
    assert result.returncode == 1  # a file failed: non-zero at the end
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [corpus["one"], corpus["two"]]
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hubert-tf: error: ") and err[0].endswith(f"({corpus['bad']})"), err
    assert not NOISE.search(result.stderr)


def test_without_skip_errors_the_first_bad_file_stops_after_the_finished_ones_are_written(asr_dir, corpus, capsys):
    from hubert_tf.cli import main  # in this process (the subprocess runs above cover the console script)

    code = main(["transcribe", corpus["one"], corpus["bad"], corpus["two"], "--model", asr_dir, "--format", "jsonl"])
    out, err = capsys.readouterr()
    assert code == 1
    # Streaming: the first file's line was written as soon as it was done, before the bad file failed.
    assert [json.loads(line)["file"] for line in out.splitlines()] == [corpus["one"]]
    err = err.strip().splitlines()
    assert len(err) == 1 and "cannot decode audio" in err[0] and err[0].endswith(f"({corpus['bad']})"), err


def test_a_missing_file_is_reported_before_the_model_loads(asr_dir, corpus):
    times = []
    for _ in range(2):  # fastest of 2: the machine is shared
        start = time.perf_counter()
        result = hubert_tf_cli("transcribe", corpus["one"], "nowhere/missing.wav", "--model", asr_dir)
        times.append(time.perf_counter() - start)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "hubert-tf: error: no such file (nowhere/missing.wav)\n"
    assert min(times) < 2.0, f"took {min(times):.1f} s: the model was loaded first"


def test_progress_counts_chunks_done_and_ends_at_exactly_100_percent(asr_dir, corpus):
    result = hubert_tf_cli("transcribe", corpus["long"], "--model", asr_dir, "--chunk-length-s", "1",
                           "--progress")
    assert result.returncode == 0, result.stderr
    states = [s.strip() for s in result.stderr.replace("\r", "\n").splitlines() if s.strip()]
    counts = [tuple(map(float, re.search(r"([\d.]+)/([\d.]+) s of audio", s).groups())) for s in states]
    assert counts[-1] == (5.0, 5.0) and states[-1].startswith("transcribing: 100%"), states
    assert all(done <= total for done, total in counts) and [t for _, t in counts] == [5.0] * len(counts)
    assert not NOISE.search(result.stderr)


def test_export_shows_its_stages_and_no_converter_lines(asr_dir, tmp_path):
    target = tmp_path / "new" / "m.tflite"
    result = hubert_tf_cli("export", asr_dir, target, "--format", "tflite", "--progress")
    assert result.returncode == 0 and result.stdout.strip() == str(target), result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(" ...")[0].split(":")[0] for line in lines] == [
        f"[1/2] loading {asr_dir}", f"[1/2] loading {asr_dir}", "[2/2] exporting tflite", "[2/2] exporting tflite"]
    assert lines[-1].startswith("[2/2] exporting tflite: done (") and not NOISE.search(result.stderr), lines
    assert target.stat().st_size > 1000


# ----------------------------------------------------------------------------------------- error lines
def test_keras_wrapped_errors_become_our_one_line():
    import keras
    import numpy as np

    class Checks(keras.layers.Layer):
        def call(self, x):
            raise ValueError("input_values must be 2-D [batch, samples], got shape (3,)")

    with pytest.raises(ValueError) as info:
        Checks()(np.zeros((3,), np.float32))
    assert "Exception encountered when calling" in str(info.value)  # what Keras makes of it
    assert error_message(info.value) == "input_values must be 2-D [batch, samples], got shape (3,)"
    assert about_file(info.value, "x.wav") == "input_values must be 2-D [batch, samples], got shape (3,) (x.wav)"
    assert error_message(ValueError("\x1b[1mbold\x1b[0m\nsecond line")) == "bold"
    assert error_message(KeyError()) == "KeyError"


def test_skip_errors_reports_missing_files_up_front_and_goes_on(asr_dir, corpus, capsys):
    from hubert_tf.cli import main

    code = main(["transcribe", "gone.wav", corpus["one"], corpus["bad"], "--model", asr_dir, "--skip-errors"])
    out, err = capsys.readouterr()
    assert code == 1 and out.startswith(f"{corpus['one']}\t") and out.count("\n") == 1
    err = err.strip().splitlines()
    assert len(err) == 2 and err[0] == "hubert-tf: error: no such file (gone.wav)"
    assert err[1].startswith("hubert-tf: error: cannot decode audio") and err[1].endswith(f"({corpus['bad']})")
