"""`hubert_tf.benchmark`: the analytic FLOP count and the report (run on a tiny config, no torch needed)."""

import json

import pytest

from hubert_tf import HubertConfig
from hubert_tf.benchmark import (
    PRESETS, benchmark, count_flops, flop_breakdown, format_report, main, resolve_config,
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
