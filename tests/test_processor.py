"""HubertProcessor: loading the hub's four files (directory or offline hub cache), parity with
transformers' Wav2Vec2Processor, -100 labels, save/load, and a light import.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hubert_tf.processing import HubertProcessor

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "processing")
HUB_FILES = os.path.join(FIXTURES, "hub_files")
HUB_FILE_NAMES = ["preprocessor_config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
REFERENCE = np.load(os.path.join(FIXTURES, "processor.npz"))
with open(os.path.join(FIXTURES, "processor.json")) as _f:
    REFERENCE_JSON = json.load(_f)


def reference_audio():
    return [REFERENCE[f"audio_{i}"] for i in range(len(REFERENCE_JSON["texts"]))]


def check_matches_reference(processor):
    out = processor(audio=reference_audio(), text=REFERENCE_JSON["texts"], sampling_rate=16000,
                    padding=True, return_tensors="np")
    assert sorted(out) == ["attention_mask", "input_values", "labels"]
    np.testing.assert_allclose(out.input_values, REFERENCE["input_values"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out.attention_mask, REFERENCE["attention_mask"])
    # The reference pads labels with the pad id; ours are the same ids with -100 in the padding.
    np.testing.assert_array_equal(out.labels, REFERENCE["labels"])
    assert (out.labels == -100).any()
    ids = np.array([[11, 11, 0, 10, 4, 6], [0, 0, 27, 12, 12, 4]])
    assert processor.batch_decode(ids) == REFERENCE_JSON["batch_decode"]


def test_loads_hub_files_directory_and_matches_reference():
    assert sorted(os.listdir(HUB_FILES)) == HUB_FILE_NAMES
    processor = HubertProcessor.from_pretrained(HUB_FILES)
    assert processor.sampling_rate == 16000
    assert processor.feature_extractor.return_attention_mask is True
    check_matches_reference(processor)


def test_loads_transformers5_saved_directory():
    check_matches_reference(HubertProcessor.from_pretrained(os.path.join(FIXTURES, "hub_files_v5")))


def test_save_and_reload(tmp_path):
    processor = HubertProcessor.from_pretrained(HUB_FILES)
    paths = processor.save_pretrained(tmp_path)
    assert sorted(os.path.basename(p) for p in paths) == HUB_FILE_NAMES == sorted(os.listdir(tmp_path))
    check_matches_reference(HubertProcessor.from_pretrained(tmp_path))


def _fake_hub_cache(root, repo_id="facebook/hubert-large-ls960-ft"):
    """A huggingface_hub cache holding the four files, as a previous download would have left it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(HUB_FILES, repo / "snapshots" / commit)
    return repo_id


def test_loads_hub_id_from_cache_offline(tmp_path, monkeypatch):
    repo_id = _fake_hub_cache(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_matches_reference(HubertProcessor.from_pretrained(repo_id, cache_dir=str(tmp_path)))
    with pytest.raises(OSError, match="facebook/not-cached"):
        HubertProcessor.from_pretrained("facebook/not-cached", cache_dir=str(tmp_path))


def test_local_files_only_uses_cache(tmp_path, monkeypatch):
    repo_id = _fake_hub_cache(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    processor = HubertProcessor.from_pretrained(repo_id, cache_dir=str(tmp_path), local_files_only=True)
    assert processor.tokenizer.vocab_size == 32


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(OSError, match="does-not-exist"):
        HubertProcessor.from_pretrained(str(tmp_path / "does-not-exist"))


def test_audio_only_text_only_and_tf_labels():
    import tensorflow as tf

    processor = HubertProcessor.from_pretrained(HUB_FILES)
    audio_only = processor(np.ones(400), sampling_rate=16000, return_tensors="np")
    assert sorted(audio_only) == ["attention_mask", "input_values"] and audio_only.input_values.shape == (1, 400)
    text_only = processor(text=["HI", "A"], padding=True)
    assert text_only["input_ids"] == [[11, 10], [7, 0]]
    single = processor(np.ones(400), text="HI THERE", sampling_rate=16000, return_tensors="tf")
    assert single["labels"].dtype == tf.int32 and single["labels"].shape == (1, 8)
    batch = processor([np.ones(400), np.ones(300)], text=["HI", "A"], sampling_rate=16000, padding=True,
                      return_tensors="tf")
    assert batch.labels.numpy().tolist() == [[11, 10], [7, -100]]


def test_bad_calls():
    processor = HubertProcessor.from_pretrained(HUB_FILES)
    with pytest.raises(ValueError, match="audio"):
        processor()
    with pytest.raises(ValueError, match="2 waveform"):
        processor([np.ones(400), np.ones(400)], text=["A"], sampling_rate=16000)
    with pytest.raises(ValueError, match="load_audio"):
        processor(np.ones(400), sampling_rate=8000)
    with pytest.raises(TypeError, match="HubertCTCTokenizer"):
        HubertProcessor(processor.feature_extractor, processor.feature_extractor)


def test_pad_collates_examples():
    processor = HubertProcessor.from_pretrained(HUB_FILES)
    examples = [processor(np.linspace(0, 1, n), text=t, sampling_rate=16000) for n, t in ((500, "HI"), (300, "A B"))]
    batch = processor.pad(input_values=[e["input_values"][0] for e in examples],
                          labels=[e["labels"][0] for e in examples], return_tensors="np")
    assert batch.input_values.shape == (2, 500) and batch.attention_mask.sum(axis=1).tolist() == [500, 300]
    np.testing.assert_array_equal(batch.input_values[1, :300], examples[1]["input_values"][0])
    assert batch.labels.tolist() == [[11, 10, -100], [7, 4, 24]]


def test_processing_modules_import_neither_tensorflow_nor_torch():
    # Loads hubert_tf.processing without the package __init__ (which imports the TF model code).
    code = textwrap.dedent(f"""
        import sys, types
        package = types.ModuleType("hubert_tf")
        package.__path__ = [{os.path.join(os.path.dirname(os.path.dirname(__file__)), "hubert_tf")!r}]
        sys.modules["hubert_tf"] = package
        import numpy as np
        from hubert_tf.processing import HubertProcessor
        processor = HubertProcessor.from_pretrained({HUB_FILES!r})
        out = processor(np.ones(400), text="HI", sampling_rate=16000, return_tensors="np")
        processor.batch_decode(np.zeros((1, 3), np.int64))
        heavy = [m for m in ("tensorflow", "torch", "transformers", "keras") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
