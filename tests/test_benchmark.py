"""`hubert_tf.benchmark`: the analytic FLOP count and the report (run on a tiny config, no torch needed),
the onnxruntime comparison (hubert_tf's tf2onnx export when torch is absent), per-part times, thread
settings (in subprocesses: they must be set before TensorFlow runs an op) and the int8 fields."""

import json
import os
import subprocess
import sys
import types

import pytest

from hubert_tf import HubertConfig
from hubert_tf.benchmark import (
    PRESETS,
    benchmark,
    count_flops,
    flop_breakdown,
    format_report,
    main,
    resolve_config,
)


def test_count_flops_tiny_config_by_hand(tiny_config):
    # tiny_config: conv_dim (16, 24, 32), conv_kernel (10, 5, 4), conv_stride (5, 4, 4), hidden 32,
    # 2 layers, intermediate 37, positional conv kernel 16 in 4 groups. 1600 samples, batch 3.
    frames0 = (1600 - 10) // 5 + 1  # 319
    frames1 = (frames0 - 5) // 4 + 1  # 79
    frames = (frames1 - 4) // 4 + 1  # 19
    feature_encoder = 2 * (frames0 * 10 * 1 * 16 + frames1 * 5 * 16 * 24 + frames * 4 * 24 * 32)
    projection = 2 * frames * 32 * 32
    positional = 2 * (frames + 1) * 16 * (32 // 4) * 32  # even kernel: one extra frame computed
    attention = 2 * (4 * 2 * frames * 32 * 32 + 2 * 2 * frames * frames * 32)  # 2 layers
    feed_forward = 2 * (2 * 2 * frames * 32 * 37)
    expected = feature_encoder + projection + positional + attention + feed_forward
    assert expected == 1_308_608
    assert count_flops(tiny_config, 1600) == expected
    assert count_flops(tiny_config, 1600, batch_size=3) == 3 * expected
    parts = flop_breakdown(tiny_config, 1600)
    assert parts["feature_encoder"] == feature_encoder
    assert parts["positional_conv"] == positional
    assert parts["attention_projections"] + parts["attention_scores"] == attention
    assert parts["feed_forward"] == feed_forward


def test_count_flops_base_10_seconds():
    """The base model on 10 s of audio: the known ~149 GFLOP (within 3 %)."""
    gflop = count_flops(HubertConfig(), 160000) / 1e9
    assert abs(gflop - 149) / 149 < 0.03, gflop
    parts = flop_breakdown(HubertConfig(), 160000)
    assert 0.3 < parts["feature_encoder"] / sum(parts.values()) < 0.36  # the conv encoder is a third


def test_presets_and_config_paths(tmp_path, tiny_config):
    large = resolve_config("large")
    assert (large.hidden_size, large.num_hidden_layers, large.do_stable_layer_norm) == (1024, 24, True)
    assert resolve_config("base") == HubertConfig(**PRESETS["base"])
    path = tiny_config.save_pretrained(tmp_path)
    assert resolve_config(str(tmp_path)) == tiny_config
    assert resolve_config(path) == tiny_config
    with pytest.raises(ValueError, match="unknown model 'huge'"):
        resolve_config("huge")


@pytest.fixture(scope="module")
def tiny_report(tiny_config):
    return benchmark(config=tiny_config, seconds=0.5, batch_size=2, repeats=2, warmup=1, padded=True,
                     train=True, train_batch_size=1, train_seconds=0.5, train_repeats=1, matmul_seconds=0.05,
                     log=lambda message: None)


def test_report_fields(tiny_report):
    r = tiny_report
    t = r["tensorflow"]
    assert r["batch_size"] == 2 and r["padded"] and r["dtype"] == "float32"
    assert t["repeats"] == 2 and 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"]
    assert t["traces"] == 1  # a second input length did not retrace
    assert t["gflops"] > 0 and t["matmul_fraction"] > 0 and t["peak_rss_mb"] > 0
    assert r["matmul_gflops"] > 0 and r["gflop"] > 0
    # padded rows keep 3/4 and 4/4 of 0.5 s: 0.875 s of audio per call
    assert t["audio_seconds_per_second"] == pytest.approx(0.875 / (t["median_ms"] / 1e3))
    assert r["train"]["tensorflow"]["median_ms"] > 0
    assert "pytorch" not in r


def test_report_text(tiny_report):
    text = format_report(tiny_report)
    assert "ms/call" in text and "GFLOP/s" in text and "real-time factor" in text
    assert "1 graph trace(s)" in text and "peak RSS" in text and "training step" in text
    assert "pytorch" not in text


def test_cli_json(tmp_path, tiny_config, capsys):
    tiny_config.save_pretrained(tmp_path)
    out = tmp_path / "report.json"
    code = main(["--model", str(tmp_path), "--seconds", "0.5", "--repeats", "2", "--warmup", "1",
                 "--matmul-seconds", "0.05", "--jit-compile", "off", "--json", "--output", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["jit_compile"] is False and printed["tensorflow"]["traces"] == 1


def test_cli_mounts_as_subcommand():
    import argparse

    from hubert_tf.benchmark import add_bench_parser, run_bench

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--dtype", "bfloat16", "--batch-size", "8", "--padded", "--train"])
    assert args.func is run_bench and args.dtype == "bfloat16" and args.batch_size == 8 and args.padded


def test_compare_pytorch_needs_torch(tiny_config):
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="needs torch and transformers"):
            benchmark(config=tiny_config, compare_pytorch=True, log=lambda message: None)
    else:
        pytest.skip("torch is installed")


# ----------------------------------------------------------------------------------------- onnxruntime, parts
def _torch_installed():
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def _stub_quantization(monkeypatch):
    """A stand-in for hubert_tf.quantization (helper F's module, same interface): the float32 function
    plus a known 1 % perturbation, so the error fields have an exact expected value."""
    import numpy as np

    import hubert_tf
    from hubert_tf.modeling.inference import inference_function

    def quantized_inference_function(model, **kwargs):
        fn = inference_function(model, jit_compile=False)

        def call(input_values, attention_mask=None):
            out = fn(input_values, attention_mask)["last_hidden_state"].numpy()
            return {"last_hidden_state": out * np.float32(1.01)}

        return call

    module = types.ModuleType("hubert_tf.quantization")
    module.quantized_inference_function = quantized_inference_function
    module.relative_rms_error = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))
    monkeypatch.setitem(sys.modules, "hubert_tf.quantization", module)
    monkeypatch.setattr(hubert_tf, "quantization", module, raising=False)


@pytest.fixture(scope="module")
def ort_report(tiny_config):
    """One tf2onnx export for every onnxruntime test: padded batch, int8 on (our int8 path stubbed)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _stub_quantization(monkeypatch)
        return benchmark(config=tiny_config, seconds=0.5, batch_size=2, repeats=3, warmup=1, padded=True,
                         compare_onnxruntime=True, onnx_export="tf2onnx", int8=True, matmul_seconds=0.05,
                         log=lambda message: None)


def test_onnxruntime_report_fields(ort_report):
    r = ort_report
    o, t = r["onnxruntime"], r["tensorflow"]
    assert o["onnx_source"] == "hubert_tf" and o["exporter"] == "tf2onnx" and o["export_seconds"] > 0
    assert o["intra_op_threads"] == os.cpu_count() and o["inter_op_threads"] == 1
    assert o["graph_optimization"] == "ORT_ENABLE_ALL" and o["execution_mode"] == "ORT_SEQUENTIAL"
    assert o["repeats"] == t["repeats"] == 3 and 0 < o["min_ms"] <= o["median_ms"] <= o["max_ms"]
    assert r["max_abs_diff_vs_onnxruntime"] < 1e-4  # the same weights through tf2onnx: ~1e-6
    ratio = r["speed_vs_onnxruntime"]
    assert ratio["median"] == pytest.approx(o["median_ms"] / t["median_ms"], rel=1e-9)
    assert ratio["min"] == pytest.approx(o["min_ms"] / t["min_ms"], rel=1e-9)
    assert min(ratio.values()) > 0 and set(ratio) == {"median", "min", "paired_median"}
    assert t["gflops_min"] >= t["gflops"] > 0 and r["matmul_gflops_fastest"] >= r["matmul_gflops"] > 0
    assert t["matmul_fraction_min"] == pytest.approx(t["gflops_min"] / r["matmul_gflops_fastest"])
    m = r["machine"]
    assert m["isa"] in ("AMX", "AVX-512", "AVX2", "AVX", "SSE", "unknown") and isinstance(m["native_bfloat16"], bool)
    json.dumps(r)  # the JSON report


def test_onnxruntime_report_text(ort_report):
    text = format_report(ort_report)
    assert "onnxruntime" in text and "hubert_tf's own tf2onnx export" in text
    r = ort_report["speed_vs_onnxruntime"]
    assert f"ORT time / our time: {r['median']:.2f} (medians), {r['min']:.2f} (fastest calls)" in text
    assert f"{r['paired_median']:.2f} (median of alternated pairs)" in text
    assert ort_report["machine"]["isa"] in text


def test_int8_fields(ort_report):
    r = ort_report
    q = r["tensorflow_int8"]
    assert q["relative_rms_error_vs_float32"] == pytest.approx(0.01, rel=1e-3)
    assert q["speed_vs_float32"]["median"] == pytest.approx(r["tensorflow"]["median_ms"] / q["median_ms"])
    o = r["onnxruntime_int8"]
    assert o["weight_type"] == "QInt8" and o["per_channel"] is False and o["min_ms"] > 0
    assert 0 < o["relative_rms_error_vs_float32"] < 0.5  # int8 weights: an error, but not garbage
    assert o["speed_vs_float32"]["min"] == pytest.approx(r["onnxruntime"]["min_ms"] / o["min_ms"])
    text = format_report(r)
    assert "hubert_tf int8" in text and "onnxruntime int8" in text and "relative RMS error 1.00%" in text


def test_parts_present_and_consistent(ort_report):
    p = ort_report["parts"]
    assert list(p["parts"]) == ["feature_encoder", "projection_positional", "transformer_layers"]  # bare: no head
    for name, part in p["parts"].items():
        assert 0 < part["min_ms"] <= part["median_ms"], name
        assert part["gflop"] > 0 and part["gflops_min"] == pytest.approx(part["gflop"] / part["min_ms"] * 1e3)
    gflop = sum(part["gflop"] for part in p["parts"].values())
    assert gflop == pytest.approx(ort_report["gflop"], rel=1e-12)  # the parts' FLOPs are the whole's
    assert p["sum_min_ms"] == pytest.approx(sum(part["min_ms"] for part in p["parts"].values()))
    assert p["sum_over_whole_min"] == pytest.approx(p["sum_min_ms"] / p["whole_min_ms"])
    assert p["max_abs_diff_vs_whole"] < 1e-5  # the chained parts compute what the whole call does
    assert "feature_encoder" in format_report(ort_report) and "sum " in format_report(ort_report)


def test_parts_with_a_ctc_head(tiny_config):
    import numpy as np
    import tensorflow as tf

    from hubert_tf.benchmark import time_parts
    from hubert_tf.modeling import TFHubertForCTC
    from hubert_tf.modeling.inference import inference_function

    model = TFHubertForCTC(tiny_config)
    fn = inference_function(model, jit_compile=False)
    x = tf.constant(np.random.default_rng(0).standard_normal((1, 4000)).astype("float32"))
    whole = fn(x)["logits"].numpy()
    out = time_parts(model, x, None, lambda: fn(x)["logits"].numpy(), whole, 4000, repeats=2)
    head = out["parts"]["head"]
    frames = whole.shape[1]
    assert head["gflop"] == pytest.approx(2 * frames * 32 * 12 / 1e9) and head["min_ms"] > 0
    assert out["max_abs_diff_vs_whole"] < 1e-5


def test_onnx_model_file_and_bad_inputs(tmp_path, tiny_config):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    with pytest.raises(OSError, match="no-such.onnx: no such file"):
        benchmark(config=tiny_config, onnx_model=str(tmp_path / "no-such.onnx"), log=lambda message: None)
    with pytest.raises(ValueError, match="onnx_export must be one of"):
        benchmark(config=tiny_config, compare_onnxruntime=True, onnx_export="pickle", log=lambda message: None)
    if not _torch_installed():
        with pytest.raises(RuntimeError, match="torch-legacy needs torch and transformers"):
            benchmark(config=tiny_config, seconds=0.5, repeats=1, warmup=1, compare_onnxruntime=True,
                      onnx_export="torch-legacy", parts=False, matmul_seconds=0.05, log=lambda message: None)


def test_ort_feeds_checks_the_graph_inputs():
    import numpy as np

    from hubert_tf.benchmark import ort_feeds

    def session(*inputs):
        return types.SimpleNamespace(get_inputs=lambda: [types.SimpleNamespace(name=n, type=t) for n, t in inputs])

    audio = np.zeros((2, 100), np.float32)
    feeds = ort_feeds(session(("input_values", "tensor(float)"), ("attention_mask", "tensor(int64)")), audio, None)
    assert feeds["attention_mask"].dtype == np.int64 and feeds["attention_mask"].all()
    with pytest.raises(ValueError, match="inputs are \\['audio'\\]"):
        ort_feeds(session(("audio", "tensor(float)")), audio, None)
    with pytest.raises(ValueError, match="no attention_mask input"):
        ort_feeds(session(("input_values", "tensor(float)")), audio, np.ones((2, 100), np.int32))


# ----------------------------------------------------------------------------------------- threads (subprocesses)
def _run_bench_subprocess(tmp_path, tiny_config, *args):
    tiny_config.save_pretrained(tmp_path)
    out = tmp_path / "report.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "hubert_tf.benchmark", "--model", str(tmp_path), "--seconds", "0.5", "--repeats",
         "1", "--warmup", "1", "--matmul-seconds", "0.02", "--no-parts", "--quiet", "--output", str(out), *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_threads_one_is_applied_in_a_fresh_process(tmp_path, tiny_config):
    report = _run_bench_subprocess(tmp_path, tiny_config, "--threads", "1")
    assert report["threads"] == {"requested": 1, "tensorflow_intra_op": 1, "tensorflow_inter_op": 1}


@pytest.mark.slow
def test_threads_after_tensorflow_started_is_a_clear_error():
    code = ("import tensorflow as tf; tf.constant(1.0) + 1.0\n"
            "from hubert_tf.benchmark import configure_threads\n"
            "try:\n    configure_threads(1)\nexcept RuntimeError as e:\n    print('ERROR', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert "ERROR threads=1: TensorFlow already runs with" in result.stdout, result.stderr[-2000:]
    assert "fresh process" in result.stdout


def test_threads_argument_checked():
    from hubert_tf.benchmark import configure_threads

    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            configure_threads(bad)
    with pytest.raises(SystemExit):
        main(["--threads", "0"])


# ----------------------------------------------------------------------------------------- int8
def test_int8_without_the_module_is_a_clear_error(monkeypatch, tiny_config):
    monkeypatch.setitem(sys.modules, "hubert_tf.quantization", None)  # import fails
    import hubert_tf

    monkeypatch.delattr(hubert_tf, "quantization", raising=False)
    with pytest.raises(RuntimeError, match="--int8 needs hubert_tf.quantization"):
        benchmark(config=tiny_config, int8=True, log=lambda message: None)


def test_speed_ratios_by_hand():
    from hubert_tf.benchmark import speed_ratios

    r = speed_ratios([2.0, 4.0, 9.0], [1.0, 4.0, 3.0])  # other, ours; pairs 2, 1, 3
    assert r == {"median": 4.0 / 3.0, "min": 2.0, "paired_median": 2.0}
