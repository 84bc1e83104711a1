"""The `hubert-tf` command line: each command and output format, one-line errors with a non-zero exit,
and --debug tracebacks."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

from hubert_tf.cli import _timestamp, format_transcript, main, subtitle_cues

RATE = 16000


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    paths = []
    for i, seconds in enumerate((1.5, 2.2)):
        audio = (np.random.default_rng(i).standard_normal(int(RATE * seconds)) * 0.1).astype(np.float32)
        path = root / f"clip{i}.wav"
        sf.write(path, audio, RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_transcribe_text_and_json(asr_dir, wavs, capsys):
    code, out, _ = run(["transcribe", wavs[0], "--model", asr_dir, "--quiet"], capsys)
    assert code == 0 and out.endswith("\n") and "\t" not in out
    code, out, _ = run(["transcribe", *wavs, "--model", asr_dir, "--format", "json", "--timestamps", "char"], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [l["file"] for l in lines] == wavs
    assert all("chunks" in l and "text" in l for l in lines)


@pytest.mark.parametrize("fmt, head", [("srt", "1\n00:00:"), ("vtt", "WEBVTT\n\n00:00:")])
def test_transcribe_subtitles(asr_dir, wavs, tmp_path, capsys, fmt, head):
    out_file = tmp_path / f"out.{fmt}"
    code, _, _ = run(["transcribe", wavs[1], "--model", asr_dir, "--format", fmt, "--output", str(out_file)], capsys)
    text = out_file.read_text()
    assert code == 0 and (text.startswith(head) or text in ("", "WEBVTT\n\n"))


def test_subtitle_formats():
    result = {"text": "HI THERE", "chunks": [{"text": "HI", "timestamp": (0.02, 0.1)},
                                            {"text": "THERE", "timestamp": (0.16, 3.28)}]}
    assert format_transcript(result, "srt", "x") == "1\n00:00:00,020 --> 00:00:03,280\nHI THERE\n\n"
    assert format_transcript(result, "vtt", "x") == "WEBVTT\n\n00:00:00.020 --> 00:00:03.280\nHI THERE\n\n"
    assert _timestamp(3661.28, ",") == "01:01:01,280"
    many = [{"text": str(i), "timestamp": (i, i + 0.5)} for i in range(12)]
    assert [c[2] for c in subtitle_cues(many)] == ["0 1 2 3 4", "5 6 7 8 9", "10 11"]  # 5 s per cue


def test_features_npy_and_h5(asr_dir, wavs, tmp_path, capsys):
    code, out, _ = run(["features", *wavs, "--layer", "1", "--model", asr_dir, "--output", str(tmp_path)], capsys)
    assert code == 0
    arrays = [np.load(p) for p in out.split()]
    assert [a.shape[1] for a in arrays] == [16, 16] and arrays[0].shape[0] == 74
    h5_path = tmp_path / "all.h5"
    code, _, _ = run(["features", *wavs, "--layer", "1", "--model", asr_dir, "--output", str(h5_path)], capsys)
    with h5py.File(h5_path) as f:
        np.testing.assert_allclose(f["clip0.wav"][()], arrays[0], atol=1e-6)
        assert f.attrs["layer"] == 1


def test_info(asr_dir, capsys):
    code, out, _ = run(["info", asr_dir], capsys)
    assert code == 0 and "TFHubertForCTC" in out and "model.safetensors" in out and "parameters:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transcribe", "missing.wav", "--model", "{asr}"], "missing.wav: no such file"),
        (["transcribe", "{bad}", "--model", "{asr}"], "bad.wav"),
        (["transcribe", "{wav}", "--model", "/no/such/model"], "/no/such/model"),
        (["info", "{empty}"], "config.json not found"),
        (["transcribe", "{wav}", "--model", "{asr}", "--format", "srt", "--timestamps", "char"], "word timestamps"),
    ],
)
def test_errors_are_one_line(asr_dir, wavs, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    (tmp_path / "empty").mkdir()
    subst = {"{asr}": asr_dir, "{bad}": str(bad), "{wav}": wavs[0], "{empty}": str(tmp_path / "empty")}
    argv = [subst.get(a, a) for a in argv]
    code, out, err = run(argv, capsys)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("hubert-tf: error:") and message in err, err


def test_offline_without_cache_is_one_line(tmp_path, wavs):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "hubert_tf", "transcribe", wavs[0], "--model", "facebook/x-y"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("hubert-tf: error:")


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "transcribe", "missing.wav", "--model", "x"])


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_export(asr_dir, tmp_path, capsys, fmt):
    code, out, _ = run(["export", asr_dir, str(tmp_path / "hubert"), "--format", fmt, "--version", "1"]
                       if fmt == "saved_model" else ["export", asr_dir, str(tmp_path / "m.tflite"), "--format", fmt],
                       capsys)
    assert code == 0
    written = out.strip()
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(written)
        assert written.endswith(os.path.join("hubert", "1"))
        assert {"serving_default", "transcribe"} <= set(loaded.signatures)
    else:
        assert written.endswith("m.tflite") and os.path.getsize(written) > 1000
