"""Bad input fails loudly and precisely, end to end through the public API (the rows of README's
"Bad input" table that the per-module tests do not already cover)."""

import os
import shutil
import threading

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES, fixture_dir, reference
from hubert_tf import HubertConfig, TFHubertForCTC
from hubert_tf.checkpoints.formats import safetensors as safetensors_format


@pytest.fixture(scope="module")
def ctc():
    return TFHubertForCTC.from_pretrained(fixture_dir("base_style"))


@pytest.fixture(scope="module")
def x():
    return reference("base_style")["single_input_values"]


def test_empty_audio(ctc):
    with pytest.raises(ValueError, match="0 samples, fewer than the minimum of 90"):
        ctc(np.zeros((1, 0), np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_audio(ctc, x, value):
    bad = x.copy()
    bad[0, 100] = value
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        ctc(bad)


def test_int16_pcm_is_explained(ctc, x):
    with pytest.raises(ValueError, match="int16.*load_audio"):
        ctc((x * 3000).astype(np.int16))


def test_all_padding_labels_give_a_finite_loss_and_gradients(ctc, x):
    labels = np.full((1, 5), -100)
    with tf.GradientTape() as tape:
        loss = ctc(x, labels=labels).loss
    grads = tape.gradient(loss, ctc.trainable_weights)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert all(np.isfinite(g.numpy()).all() for g in grads if g is not None)


def test_directory_where_a_file_is_expected(tmp_path):
    (tmp_path / "config.json").mkdir()
    with pytest.raises(OSError, match="config.json is a directory"):
        TFHubertForCTC.from_pretrained(tmp_path)


def test_wrong_format_under_a_known_name(tmp_path):
    shutil.copy(os.path.join(fixture_dir("base_style"), "config.json"), tmp_path)
    shutil.copy(os.path.join(FIXTURES, "formats", "torch_pickle", "state_zip.bin"), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        TFHubertForCTC.from_pretrained(tmp_path)


def test_truncated_checkpoint_names_the_file(tmp_path):
    shutil.copy(os.path.join(fixture_dir("base_style"), "config.json"), tmp_path)
    data = open(os.path.join(fixture_dir("base_style"), "model.safetensors"), "rb").read()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        TFHubertForCTC.from_pretrained(tmp_path)


def test_unreadable_checkpoint_names_the_file(tmp_path, monkeypatch):
    shutil.copy(os.path.join(fixture_dir("base_style"), "config.json"), tmp_path)
    shutil.copy(os.path.join(fixture_dir("base_style"), "model.safetensors"), tmp_path)
    os.chmod(tmp_path / "model.safetensors", 0)
    if os.geteuid() == 0:  # root reads anything: make the reader's open() fail the way it would
        def denied(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(safetensors_format, "open", denied, raising=False)
    with pytest.raises(OSError, match="model.safetensors"):
        TFHubertForCTC.from_pretrained(tmp_path)


def test_config_errors_name_the_field(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "hubert", "conv_stride": [5, 2]}')
    with pytest.raises(ValueError, match=r"config.json.*conv_stride"):
        HubertConfig.from_pretrained(tmp_path)


def test_one_model_from_many_threads(ctc):
    """Eight threads calling one model object at once get what sequential calls get."""
    ref = reference("base_style")
    x, m = ref["batch_input_values"], ref["batch_attention_mask"]
    rows = [slice(i % 3, i % 3 + 1) for i in range(8)]
    sequential = [ctc(x[r], attention_mask=m[r]).logits.numpy() for r in rows]
    results, errors = [None] * 8, []

    def work(i):
        try:
            results[i] = ctc(x[rows[i]], attention_mask=m[rows[i]]).logits.numpy()
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, sequential):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_failed_export_leaves_the_previous_version_intact(ctc, tmp_path, monkeypatch):
    import keras

    from hubert_tf.export import export_saved_model

    first = export_saved_model(ctc, tmp_path / "hubert", version=1, signatures=["serve"])
    before = sorted(os.path.relpath(os.path.join(d, f), first) for d, _, fs in os.walk(first) for f in fs)

    def failing_write_out(self, path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise OSError("disk full (injected)")

    # ExportArchive() builds the backend's archive class; patch the class it really builds.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", failing_write_out)
    with pytest.raises(OSError, match="injected"):
        export_saved_model(ctc, tmp_path / "hubert", version=1, overwrite=True, signatures=["serve"])
    with pytest.raises(OSError, match="injected"):
        export_saved_model(ctc, tmp_path / "hubert", version=2, signatures=["serve"])
    assert sorted(os.listdir(tmp_path / "hubert")) == ["1"]  # no partial version 2, no staging left
    after = sorted(os.path.relpath(os.path.join(d, f), first) for d, _, fs in os.walk(first) for f in fs)
    assert after == before
    assert tf.saved_model.load(first).signatures["serving_default"] is not None
