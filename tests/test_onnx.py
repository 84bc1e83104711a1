"""ONNX export (`hubert_tf.onnx`, the optional `onnx` extra): parity with Keras in onnxruntime for several
lengths and a padded batch in one exported model, the file layout (named dynamic dimensions, metadata,
external data), the Python-side input checks that replace the graph's assertions, and the error naming
the extra when the converter is missing."""

import os
import sys

import numpy as np
import pytest
from conftest import assert_close, fixture_dir

from hubert_tf import TFHubertForCTC, TFHubertForSequenceClassification
from hubert_tf import onnx as hubert_onnx

# Measured: <= 6e-6 on these fixtures (tf2onnx 1.17, onnxruntime 1.32); 1e-4 is the target of issue 15.
ATOL = 1e-4
SECONDS = (0.5, 1.0, 2.0)


@pytest.fixture(scope="module")
def tools():
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def models():
    return {name: TFHubertForCTC.from_pretrained(fixture_dir(name)) for name in ("base_style", "large_style")}


@pytest.fixture(scope="module")
def exported(tools, models, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return {name: hubert_onnx.export_onnx(model, out / f"{name}.onnx") for name, model in models.items()}


def speech_like(batch, samples, seed):
    return np.random.default_rng(seed).standard_normal((batch, samples)).astype(np.float32)


@pytest.mark.parametrize("name", ["base_style", "large_style"])
def test_one_export_matches_keras_for_every_length_and_padding(models, exported, name):
    model, session = models[name], hubert_onnx.onnx_session(exported[name], num_threads=1)
    for i, seconds in enumerate(SECONDS):
        samples = int(seconds * 16000)
        x = speech_like(2, samples, seed=i)
        mask = np.ones_like(x, np.int32)
        mask[1, samples * 3 // 5:] = 0  # row 1 padded: the mask path, not just all-ones
        out = session(x, mask)
        expected = model(x, attention_mask=mask, training=False)["logits"].numpy()
        assert_close(out["logits"], expected, ATOL, f"{name} {seconds} s padded")
        np.testing.assert_array_equal(out["frame_lengths"], np.asarray(model.hubert.frame_lengths(mask.sum(-1))))
        unpadded = session(x)  # no mask given: all samples valid, as the Keras model without a mask
        assert_close(unpadded["logits"], model(x, training=False)["logits"].numpy(), ATOL, f"{name} {seconds} s")


def test_the_file_runs_in_plain_onnxruntime_with_named_dynamic_dimensions(tools, models, exported):
    import onnx

    proto = onnx.load(exported["base_style"])
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    assert dims == {"input_values": ["batch", "samples"], "attention_mask": ["batch", "samples"],
                    "logits": ["batch", "frames", 12], "frame_lengths": ["batch"]}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert '"min_samples": 90' in meta[hubert_onnx.METADATA_KEY]
    assert not {n.op_type for n in proto.graph.node} & {"Assert", "CheckNumerics"}

    session = tools.InferenceSession(exported["base_style"], providers=["CPUExecutionProvider"])
    x = speech_like(3, 12345, seed=5)  # a batch size and an odd length never seen at export
    logits, lengths = session.run(None, {"input_values": x, "attention_mask": np.ones_like(x, np.int32)})
    assert_close(logits, models["base_style"](x, training=False)["logits"].numpy(), ATOL, "plain onnxruntime")
    assert lengths.tolist() == [logits.shape[1]] * 3


def test_classification_with_a_padded_batch(tools, tmp_path):
    model = TFHubertForSequenceClassification.from_pretrained(fixture_dir("cls"))
    path = hubert_onnx.export_onnx(model, tmp_path / "sub" / "cls.onnx", opset=17)
    session = hubert_onnx.onnx_session(path)
    assert session.input_names == ["input_values", "attention_mask"] and session.output_names == ["logits"]
    x = speech_like(2, 16000, seed=7)
    mask = np.ones_like(x, np.int32)
    mask[0, 9000:] = 0
    out = session(x, mask)["logits"]
    assert out.shape == (2, model.config.num_labels)
    assert_close(out, model(x, attention_mask=mask, training=False)["logits"].numpy(), ATOL, "classification")
    with pytest.raises(ValueError, match=r"takes inputs .*got unknown \['labels'\]"):
        session.run(None, {"input_values": x, "attention_mask": mask, "labels": np.zeros(2, np.int32)})


def test_fresh_model_with_zero_biases_converts_and_verify_catches_the_tf2onnx_bug(tools, tiny_config, tmp_path,
                                                                                    monkeypatch):
    from hubert_tf import TFHubertModel

    model = TFHubertModel(tiny_config)  # freshly initialised: every bias is exactly 0
    x = speech_like(2, 16000, seed=4)
    path = hubert_onnx.export_onnx(model, tmp_path / "fresh.onnx", attention_mask=False)
    out = hubert_onnx.onnx_session(path)(x)["last_hidden_state"]
    assert_close(out, model(x, training=False)["last_hidden_state"].numpy(), ATOL, "fresh model")

    # With tf2onnx's reshape optimiser on, the split-heads Reshape gets a flattened input (1.17): the
    # export must refuse instead of writing a model that fails or lies in onnxruntime.
    monkeypatch.setattr(hubert_onnx, "_BROKEN_OPTIMIZERS", ())
    try:
        hubert_onnx.export_onnx(model, tmp_path / "broken.onnx", attention_mask=False)
    except RuntimeError as error:
        assert "converted ONNX model" in str(error) and "tf2onnx" in str(error)
        assert sorted(os.listdir(tmp_path)) == ["fresh.onnx"]
    else:
        import tf2onnx

        pytest.fail(f"tf2onnx {tf2onnx.__version__} converts this model with its reshape optimiser: the "
                    "workaround in hubert_tf.onnx._BROKEN_OPTIMIZERS can go (for this version)")


def test_large_models_write_external_data(tools, models, tmp_path, monkeypatch):
    # HuBERT XLarge (~3.8 GB of weights) is over protobuf's 2 GiB: pretend this fixture is too.
    monkeypatch.setattr(hubert_onnx, "EXTERNAL_DATA_BYTES", 0)
    path = hubert_onnx.export_onnx(models["base_style"], tmp_path / "big.onnx", opset=18, attention_mask=False)
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data"]
    assert os.path.getsize(path + ".data") > 10_000
    assert not hasattr(np, "product")  # tf2onnx's numpy-1 name is lent for the conversion only
    x = speech_like(1, 20000, seed=3)
    out = hubert_onnx.onnx_session(path)(x)["logits"]
    assert_close(out, models["base_style"](x, training=False)["logits"].numpy(), ATOL, "external data")


def test_bad_inputs_are_named_errors_before_onnxruntime_runs(exported):
    session = hubert_onnx.onnx_session(exported["base_style"])
    assert session.min_samples == 90
    x = speech_like(2, 8000, seed=1)
    ones = np.ones_like(x, np.int32)
    cases = [
        ((np.zeros((1, 89), np.float32),), "89 samples, fewer than the minimum of 90"),
        ((x[0],), r"shape \[batch, samples\]"),
        ((x[:0],), "empty batch"),
        ((np.where(np.arange(8000) == 5, np.nan, x).astype(np.float32),), "NaN or infinite"),
        (((x * 32767).astype(np.int16),), "int16, i.e. raw PCM"),
        ((x, ones[:, :-1]), r"attention_mask has shape \(2, 7999\)"),
        ((x, ones * 2), "only 0 \\(padding\\) and 1"),
        ((x, np.concatenate([ones[:1], 0 * ones[:1]])), r"needs at least 90 valid samples \(.*\); got a row with 0"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            session(*args)
    with pytest.raises(ValueError, match="missing \\['attention_mask'\\]"):
        session.run(None, {"input_values": x})
    out = session(x.astype(np.float64), ones.astype(np.int64))  # cast, not refused
    assert out["logits"].dtype == np.float32


def test_bad_arguments_and_files(tools, models, tmp_path):
    model = models["base_style"]
    for opset in (12, 99, "15", True):
        with pytest.raises(ValueError, match="opset must be an int from 13"):
            hubert_onnx.export_onnx(model, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(ValueError, match="needs a HuBERT model"):
        hubert_onnx.export_onnx(object(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="float32 model"):
        hubert_onnx.export_onnx(TFHubertForCTC.from_pretrained(fixture_dir("base_style"), dtype="bfloat16"),
                                tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such ONNX model"):
        hubert_onnx.onnx_session(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: not an ONNX model"):
        hubert_onnx.onnx_session(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        hubert_onnx.onnx_session(tmp_path / "junk.onnx", num_threads=0)


def test_failed_conversion_leaves_the_old_file(tools, models, tmp_path, monkeypatch):
    import tf2onnx

    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous model")

    def broken(*args, **kwargs):
        raise RuntimeError("converter died")

    monkeypatch.setattr(tf2onnx.convert, "from_function", broken)
    with pytest.raises(RuntimeError, match="converter died"):
        hubert_onnx.export_onnx(models["base_style"], target)
    assert target.read_bytes() == b"previous model" and os.listdir(tmp_path) == ["m.onnx"]


@pytest.mark.parametrize("module, call", [
    ("tf2onnx", lambda: hubert_onnx.export_onnx(None, "m.onnx")),
    ("onnxruntime", lambda: hubert_onnx.onnx_session("m.onnx")),
])
def test_missing_converter_names_the_extra(monkeypatch, module, call):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=rf'needs the .{module}. package .*pip install "hubert_tf\[onnx\]"'):
        call()
