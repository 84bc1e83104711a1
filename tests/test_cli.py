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


def hubert_tf_cli(*argv, cwd=None, env=None, timeout=300):
    """Runs the real `hubert-tf` console script in a subprocess (offline); returns the CompletedProcess."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quieten TensorFlow by itself
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "hubert_tf", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=timeout)


def write_wav(path, seconds, seed=0):
    """A noise recording of `seconds` at 16 kHz (PCM_16); returns its path as str."""
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    audio = (np.random.default_rng(seed).standard_normal(int(RATE * seconds)) * 0.1).astype(np.float32)
    sf.write(path, audio, RATE, subtype="PCM_16")
    return str(path)


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
    document = json.loads(out)  # one JSON document: a list, one object per file
    assert code == 0 and [d["file"] for d in document] == wavs
    assert all("chunks" in d and "text" in d for d in document)


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
        (["transcribe", "missing.wav", "--model", "{asr}"], "no such file (missing.wav)"),
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


@pytest.mark.slow  # ~30 s; the TFLite export runs as a subprocess in test_cli_streaming.py
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


# ------------------------------------------------------------------------- progress, --version, defaults
def test_audio_progress_counts_finished_samples_and_ends_at_exactly_100_percent():
    """The bar counts seconds of audio the pipeline reports done, capped at each file's end (a batch can
    never push it past the file), the decoded length replaces the header's estimate, and closing puts
    the total at exactly what was done."""
    from hubert_tf.cli_common import AudioProgress

    bar = AudioProgress({"a.wav": 2.0, "b.wav": 1.0}, "x", enabled=False)
    assert bar.bar.total == 3.0
    bar.start_file("a.wav", 40000, 16000)  # 2.5 s decoded: the header said 2.0
    assert bar.bar.total == 3.5
    for samples in (16000, 16000, 16000):  # the last batch would pass the file's end
        bar.callback(samples)
    assert bar.bar.n == 2.5
    bar.finish_file()
    bar.skip_file("b.wav")  # failed before decoding: its 1.0 s leaves the total
    assert (bar.bar.n, bar.bar.total) == (2.5, 2.5)
    bar.close()
    assert bar.bar.n == bar.bar.total == 2.5


def test_pipeline_progress_adds_up_to_the_samples_of_a_chunked_file(asr_dir):
    """What the pipelines report with overlapping chunks: the kept samples, adding up to the file's
    length exactly (overlap context is not counted twice), one call per batch."""
    import hubert_tf

    audio = (np.random.default_rng(7).standard_normal(RATE * 5) * 0.1).astype(np.float32)
    calls = []
    hubert_tf.transcribe((audio, RATE), asr_dir, chunk_length_s=1.0, progress=calls.append)
    assert sum(calls) == audio.size and len(calls) >= 5, calls


def test_version_flag(capsys):
    import hubert_tf

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"hubert-tf {hubert_tf.__version__}"


def test_defaults_are_the_pipelines_defaults(capsys):
    import inspect

    from hubert_tf import pipelines
    from hubert_tf.configuration import DEFAULT_ASR_MODEL, DEFAULT_FEATURES_MODEL

    assert inspect.signature(pipelines.transcribe).parameters["model"].default == DEFAULT_ASR_MODEL
    assert inspect.signature(pipelines.extract_features).parameters["model"].default == DEFAULT_FEATURES_MODEL
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    assert DEFAULT_ASR_MODEL in "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens


def test_bench_is_listed_and_gets_its_full_parser_only_when_asked(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--compare-pytorch" in capsys.readouterr().out
