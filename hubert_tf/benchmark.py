"""Speed of hubert_tf on this machine: `python -m hubert_tf.benchmark` (or `hubert-tf bench`).

Builds a model of a named size with random weights and reports, for N seconds of audio at batch B:
milliseconds per call (median of alternated repeats after warm-up), real-time factor, achieved GFLOP/s
next to the machine's own matrix-multiply GFLOP/s in the same dtype (measured in the same run), peak
memory, graph traces, and optionally a training step and the reference PyTorch model side by side.

FLOPs are counted analytically by `count_flops`: one multiply-add is 2 FLOPs, and only the matrix
products and convolutions are counted (norms, activations, softmax, biases and residual adds are a
fraction of a percent and left out). The base model on 10 s of audio is ~148 GFLOP.

Examples:

    python -m hubert_tf.benchmark                                  # base, 10 s, batch 1, float32
    python -m hubert_tf.benchmark --dtype bfloat16 --compare-pytorch
    python -m hubert_tf.benchmark --batch-size 8 --padded          # 8 rows of 5-10 s, padded
    python -m hubert_tf.benchmark --train --json                   # + a training step, JSON output

Timings on a shared machine are noisy: the medians of calls alternated between implementations are
what to compare; `uptime` shows whether anything else was running.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Sequence

SAMPLING_RATE = 16000

# Named sizes: HubertConfig overrides (the defaults are the base model).
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    "xlarge": dict(hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120,
                   feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


# ----------------------------------------------------------------------------------------- FLOPs
def resolve_config(model: str):
    """A HubertConfig from a preset name ("base", "large", "xlarge") or a config.json path / directory."""
    from .configuration import HubertConfig

    if model in PRESETS:
        return HubertConfig(**PRESETS[model])
    if os.path.isdir(model) or os.path.isfile(model):
        path = os.path.join(model, "config.json") if os.path.isdir(model) else model
        return HubertConfig.from_json_file(path)
    raise ValueError(f"unknown model {model!r}: use one of {sorted(PRESETS)} or a config.json path")


def _conv_frames(length: int, kernel: int, stride: int) -> int:
    from .modeling.masking import conv_output_lengths

    return max(int(conv_output_lengths(length, [kernel], [stride])), 0)


def flop_breakdown(config, num_samples: int, batch_size: int = 1) -> dict[str, int]:
    """FLOPs of one forward pass of the HuBERT body (no head), per component (multiply-add = 2 FLOPs).

    Args:
        config: HubertConfig.
        num_samples: audio samples per row (the padded length for a padded batch).
        batch_size: rows.
    Returns:
        {"feature_encoder", "feature_projection", "positional_conv", "attention_projections",
        "attention_scores", "feed_forward"}: FLOPs of each, for the whole batch.
    """
    c = config
    length, conv = num_samples, 0
    in_dims = [1] + list(c.conv_dim[:-1])
    for cin, cout, k, s in zip(in_dims, c.conv_dim, c.conv_kernel, c.conv_stride):
        length = _conv_frames(length, k, s)
        conv += 2 * length * k * cin * cout
    frames, hidden = length, c.hidden_size
    k = c.num_conv_pos_embeddings
    # "same" padding k // 2 on both sides: an even kernel computes one extra frame (then dropped).
    pos_frames = frames + 2 * (k // 2) - k + 1
    layers = c.num_hidden_layers
    out = {
        "feature_encoder": conv,
        "feature_projection": 2 * frames * c.conv_dim[-1] * hidden,
        "positional_conv": 2 * pos_frames * k * (hidden // c.num_conv_pos_embedding_groups) * hidden,
        # q, k, v and output projections
        "attention_projections": layers * 4 * 2 * frames * hidden * hidden,
        # q k^T and probs v: each frames x frames x head_dim per head, i.e. frames^2 x hidden in all
        "attention_scores": layers * 2 * 2 * frames * frames * hidden,
        "feed_forward": layers * 2 * 2 * frames * hidden * c.intermediate_size,
    }
    return {name: value * batch_size for name, value in out.items()}


def count_flops(config, num_samples: int, batch_size: int = 1) -> int:
    """Total FLOPs of one forward pass of the HuBERT body on `batch_size` rows of `num_samples` samples.

    A multiply-add counts as 2 FLOPs; the conv feature encoder, feature projection, grouped positional
    conv, attention (q/k/v/out projections and the two frames x frames products) and feed-forward are
    counted; elementwise work is not. Base model, 10 s at 16 kHz: ~148 GFLOP.

    Example:

    >>> from hubert_tf import HubertConfig
    >>> round(count_flops(HubertConfig(), 160000) / 1e9)
    148
    """
    return sum(flop_breakdown(config, num_samples, batch_size).values())


# ----------------------------------------------------------------------------------------- timing
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (getrusage; Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_alternating(calls: dict[str, Callable[[], Any]], repeats: int, pause: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each callable, calling them in turn `repeats` times (one round = each once),
    so that load from elsewhere hits every implementation alike. `pause` seconds between calls let the
    other runtime's worker threads go idle."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min and max in milliseconds."""
    return {
        "median_ms": 1e3 * statistics.median(seconds), "min_ms": 1e3 * min(seconds),
        "max_ms": 1e3 * max(seconds), "repeats": len(seconds),
    }


def matmul_gflops(dtype: str = "float32", shape: tuple[int, int, int] = (512, 768, 3072), seconds: float = 1.0) -> float:
    """The machine's matrix-multiply speed in GFLOP/s for `dtype`: a compiled [m, k] @ [k, n] product
    (a feed-forward layer on ~10 s of audio by default), median of calls over `seconds`."""
    import tensorflow as tf

    m, k, n = shape
    a = tf.cast(tf.random.stateless_normal([m, k], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([k, n], seed=[3, 4]), dtype)
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    for _ in range(3):
        matmul(a, b).numpy()
    # each sample runs several products so that the per-call overhead does not count
    inner, samples, deadline = 8, [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(inner):
            out = matmul(a, b)
        out.numpy()
        samples.append((time.perf_counter() - start) / inner)
    return 2 * m * k * n / statistics.median(samples) / 1e9


def machine_description() -> dict[str, Any]:
    """CPU model name, core count, and the library versions."""
    import tensorflow as tf

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": model, "cores": os.cpu_count(), "tensorflow": tf.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    blas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "TF_", "XLA_FLAGS"))
            and k != "TF_CLI_CONFIG_FILE"}
    if blas:
        info["environment"] = blas
    return info


# ----------------------------------------------------------------------------------------- inputs
def make_inputs(batch_size: int, num_samples: int, padded: bool, seed: int = 0):
    """Random unit-variance audio [batch, samples] (float32) and an int32 attention mask or None.

    With `padded`, row i keeps a length spread evenly between half and all of `num_samples` (the last
    row is full) and is zero-padded after it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((batch_size, num_samples)).astype(np.float32)
    if not padded:
        return audio, None, [num_samples] * batch_size
    lengths = [int(num_samples * (0.5 + 0.5 * (i + 1) / batch_size)) for i in range(batch_size)]
    mask = np.zeros((batch_size, num_samples), np.int32)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        audio[i, n:] = 0.0
    return audio, mask, lengths


def _torch_available() -> bool:
    # find_spec, not import: torch is imported only after TensorFlow's peak memory is recorded
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def _reference_config(config, attn_implementation="sdpa"):
    import transformers

    cfg = transformers.HubertConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"})
    cfg._attn_implementation = attn_implementation
    return cfg


def reference_model(tf_model, cls_name: str = "HubertModel"):
    """The transformers reference model with `tf_model`'s config and weights (strict state-dict load),
    scaled dot-product attention."""
    import torch
    import transformers

    from .checkpoints.saving import model_state_dict

    cls = getattr(transformers, cls_name)
    model = cls(_reference_config(tf_model.config))
    state = {k: torch.from_numpy(v.copy()) for k, v in model_state_dict(tf_model).items()}
    model.load_state_dict(state, strict=True)
    return model


# ----------------------------------------------------------------------------------------- benchmark
def benchmark(model: str = "base", seconds: float = 10.0, batch_size: int = 1, dtype: str = "float32",
              jit_compile: str | bool = "auto", repeats: int = 10, warmup: int = 2, padded: bool = False,
              compare_pytorch: bool = False, train: bool = False, train_batch_size: int = 2,
              train_seconds: float = 5.0, train_repeats: int = 5, train_jit_compile: str | bool = "auto",
              matmul_seconds: float = 2.0, config=None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the benchmark and returns the report as a dict (see `format_report`).

    Args:
        model: preset name or config.json path (ignored when `config` is given).
        seconds, batch_size: audio length per row and rows per call.
        dtype: "float32" or "bfloat16" (a Keras dtype policy; norms and softmax stay float32).
        jit_compile: True / False / "auto" for `hubert_tf.modeling.inference.inference_function`.
        repeats, warmup: timed and untimed calls.
        padded: rows of different lengths with an attention mask (throughput of a real batch).
        compare_pytorch: time the reference PyTorch HubertModel (same config, weights and input) in
            alternation with ours; needs torch and transformers.
        train: also time a training step of HubertForCTC on `train_batch_size` x `train_seconds`.
        matmul_seconds: duration of the matmul micro-benchmark.
        config: a HubertConfig to use instead of `model`.
        log: progress messages (to stderr by default).
    """
    import numpy as np
    import tensorflow as tf

    from .modeling import TFHubertModel
    from .modeling.inference import inference_function, resolve_jit_compile

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    config = config if config is not None else resolve_config(model)
    if compare_pytorch and not _torch_available():
        raise RuntimeError("--compare-pytorch needs torch and transformers importable in this environment")
    num_samples = int(round(seconds * SAMPLING_RATE))
    report: dict[str, Any] = {
        "model": model if isinstance(model, str) else "config",
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                  "intermediate_size", "feat_extract_norm", "do_stable_layer_norm")},
        "seconds": seconds, "batch_size": batch_size, "dtype": dtype, "padded": padded,
        "machine": machine_description(),
    }
    flops = count_flops(config, num_samples, batch_size)
    report["gflop"] = flops / 1e9
    report["gflop_breakdown"] = {k: v / 1e9 for k, v in flop_breakdown(config, num_samples, batch_size).items()}

    log(f"matmul micro-benchmark ({dtype})")
    report["matmul_gflops"] = matmul_gflops(dtype, seconds=matmul_seconds)

    log(f"building {report['model']} ({dtype})")
    tf_model = TFHubertModel(config, dtype=dtype)
    report["parameters"] = int(tf_model.count_params())
    jit = resolve_jit_compile(tf_model, jit_compile)
    report["jit_compile"] = jit
    fn = inference_function(tf_model, jit_compile=jit)
    audio, mask, lengths = make_inputs(batch_size, num_samples, padded)
    x = tf.constant(audio)
    m = None if mask is None else tf.constant(mask)

    def tf_call():
        return fn(x, m)["last_hidden_state"].numpy()

    start = time.perf_counter()
    tf_out = tf_call()
    report["first_call_ms"] = 1e3 * (time.perf_counter() - start)
    for _ in range(max(warmup - 1, 0)):
        tf_call()
    tf_peak_rss = peak_rss_mb()  # before the reference model exists

    calls = {"tensorflow": tf_call}
    torch_model = None
    if compare_pytorch:
        import torch

        log("building the reference PyTorch HubertModel (sdpa)")
        torch_model = reference_model(tf_model).eval()
        tx = torch.from_numpy(audio)
        tm = None if mask is None else torch.from_numpy(mask.astype(np.int64))

        def torch_call():
            with torch.inference_mode():
                return torch_model(tx, attention_mask=tm).last_hidden_state.numpy()

        torch_out = torch_call()
        for _ in range(max(warmup - 1, 0)):
            torch_call()
        valid = np.ones(tf_out.shape[:2], bool) if mask is None else _frame_mask(tf_model, lengths, tf_out.shape[1])
        report["max_abs_diff_vs_pytorch"] = float(np.max(np.abs(tf_out[valid] - torch_out[valid])))
        report["pytorch"] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        calls["pytorch"] = torch_call

    log(f"timing {repeats} calls" + (" each, alternating" if len(calls) > 1 else ""))
    times = time_alternating(calls, repeats, pause=0.05 if len(calls) > 1 else 0.0)
    tf_time = statistics.median(times["tensorflow"])
    audio_seconds = sum(lengths) / SAMPLING_RATE
    report["tensorflow"] = {
        **summarize(times["tensorflow"]),
        "real_time_factor": tf_time / audio_seconds,
        "audio_seconds_per_second": audio_seconds / tf_time,
        "gflops": flops / tf_time / 1e9,
        "matmul_fraction": flops / tf_time / 1e9 / report["matmul_gflops"],
        "peak_rss_mb": tf_peak_rss,
    }
    # a second length: compiled once for all lengths, so no new trace (XLA compiles each new shape)
    other = make_inputs(batch_size, num_samples - 3 * config.inputs_to_logits_ratio + 17, padded, seed=1)
    start = time.perf_counter()
    fn(tf.constant(other[0]), None if other[1] is None else tf.constant(other[1]))["last_hidden_state"].numpy()
    report["tensorflow"]["new_length_first_call_ms"] = 1e3 * (time.perf_counter() - start)
    report["tensorflow"]["traces"] = fn.tracing_count
    if compare_pytorch:
        torch_time = statistics.median(times["pytorch"])
        report["pytorch"].update(summarize(times["pytorch"]))
        report["pytorch"]["real_time_factor"] = torch_time / audio_seconds
        report["pytorch"]["gflops"] = flops / torch_time / 1e9
        report["speedup_vs_pytorch"] = torch_time / tf_time
    del torch_model
    gc.collect()

    if train:
        report["train"] = benchmark_training(
            config, dtype=dtype, batch_size=train_batch_size, seconds=train_seconds, repeats=train_repeats,
            warmup=warmup, jit_compile=train_jit_compile, compare_pytorch=compare_pytorch, log=log,
        )
    return report


def _frame_mask(tf_model, lengths, frames):
    import numpy as np

    valid = tf_model.hubert.frame_lengths(np.asarray(lengths))
    return np.arange(frames)[None, :] < np.asarray(valid)[:, None]


def benchmark_training(config, dtype="float32", batch_size=2, seconds=5.0, repeats=5, warmup=2,
                       jit_compile="auto", compare_pytorch=False, log=None) -> dict[str, Any]:
    """Seconds per training step of HubertForCTC: forward (dropout, SpecAugment), CTC loss, gradients of
    every weight, AdamW update. `layerdrop` is set to 0 so every step runs every layer (in both
    frameworks). With `compare_pytorch`, the reference (same config, weights, input, labels) alternates."""
    import numpy as np
    import tensorflow as tf
    import keras

    from .modeling import TFHubertForCTC

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    config = config.copy(layerdrop=0.0)
    num_samples = int(round(seconds * SAMPLING_RATE))
    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    log(f"training step: HubertForCTC, batch {batch_size} x {seconds:g} s, {policy}")
    model = TFHubertForCTC(config, dtype=policy)
    audio, _, _ = make_inputs(batch_size, num_samples, padded=False, seed=2)
    frames = int(model.hubert.frame_lengths(num_samples))
    rng = np.random.default_rng(3)
    labels = rng.integers(1, config.vocab_size, size=(batch_size, max(frames // 4, 1))).astype(np.int32)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-5)
    optimizer.build(model.trainable_variables)
    if jit_compile == "auto":
        jit_compile = _auto_train_jit(dtype)

    @tf.function(jit_compile=bool(jit_compile))
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = model(x, labels=y, training=True).loss
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    x, y = tf.constant(audio), tf.constant(labels)
    start = time.perf_counter()
    step(x, y).numpy()
    out: dict[str, Any] = {
        "batch_size": batch_size, "seconds": seconds, "policy": policy, "jit_compile": bool(jit_compile),
        "first_step_ms": 1e3 * (time.perf_counter() - start),
    }
    for _ in range(max(warmup - 1, 0)):
        step(x, y).numpy()
    calls = {"tensorflow": lambda: step(x, y).numpy()}
    if compare_pytorch:
        import torch

        reference = reference_model(model, "HubertForCTC").train()
        torch_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-5)
        tx, ty = torch.from_numpy(audio), torch.from_numpy(labels.astype(np.int64))

        def torch_step():
            loss = reference(tx, labels=ty).loss
            loss.backward()
            torch_optimizer.step()
            torch_optimizer.zero_grad(set_to_none=True)
            return loss.item()

        for _ in range(warmup):
            torch_step()
        calls["pytorch"] = torch_step
    times = time_alternating(calls, repeats, pause=0.05 if len(calls) > 1 else 0.0)
    flops = 3 * count_flops(config, num_samples, batch_size)  # backward ~ 2 x forward
    out["tensorflow"] = {**summarize(times["tensorflow"]),
                         "gflops": flops / statistics.median(times["tensorflow"]) / 1e9}
    if compare_pytorch:
        out["pytorch"] = {**summarize(times["pytorch"]), "gflops": flops / statistics.median(times["pytorch"]) / 1e9}
        out["speedup_vs_pytorch"] = statistics.median(times["pytorch"]) / statistics.median(times["tensorflow"])
    return out


def _auto_train_jit(dtype: str) -> bool:
    from .modeling.inference import AUTO_TRAIN_JIT

    return AUTO_TRAIN_JIT.get(dtype, False)


# ----------------------------------------------------------------------------------------- output
def format_report(report: dict[str, Any]) -> str:
    """The report as a few human-readable lines."""
    m, t = report["machine"], report["tensorflow"]
    load = m.get("load_average")
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, TensorFlow {m['tensorflow']}"
        + (f", load {load[0]:.2f}" if load else ""),
        f"model: {report['model']} ({report['parameters'] / 1e6:.1f}M parameters), {report['dtype']}, "
        f"batch {report['batch_size']} x {report['seconds']:g} s{' (padded)' if report['padded'] else ''}, "
        f"jit_compile={report['jit_compile']}, {report['gflop']:.1f} GFLOP per call",
        f"tensorflow: {t['median_ms']:.1f} ms/call (median of {t['repeats']}, min {t['min_ms']:.1f}), "
        f"real-time factor {t['real_time_factor']:.4f} ({t['audio_seconds_per_second']:.1f} s of audio per s), "
        f"{t['gflops']:.1f} GFLOP/s = {100 * t['matmul_fraction']:.0f}% of the measured "
        f"{report['dtype']} matmul {report['matmul_gflops']:.1f} GFLOP/s",
        f"  first call {report['first_call_ms']:.0f} ms, new length first call {t['new_length_first_call_ms']:.0f} ms, "
        f"{t['traces']} graph trace(s), peak RSS {t['peak_rss_mb']:.0f} MiB",
    ]
    if "pytorch" in report:
        p = report["pytorch"]
        lines.append(
            f"pytorch {p['torch']} (reference HubertModel, sdpa, float32, {p['threads']} threads): "
            f"{p['median_ms']:.1f} ms/call (min {p['min_ms']:.1f}), {p['gflops']:.1f} GFLOP/s; "
            f"tensorflow is {report['speedup_vs_pytorch']:.2f}x faster; max |diff| "
            f"{report['max_abs_diff_vs_pytorch']:.2e}"
        )
    if "train" in report:
        tr = report["train"]
        line = (f"training step ({tr['batch_size']} x {tr['seconds']:g} s, {tr['policy']}, "
                f"jit_compile={tr['jit_compile']}): tensorflow {tr['tensorflow']['median_ms']:.0f} ms "
                f"(min {tr['tensorflow']['min_ms']:.0f})")
        if "pytorch" in tr:
            line += (f", pytorch {tr['pytorch']['median_ms']:.0f} ms (min {tr['pytorch']['min_ms']:.0f}); "
                     f"{tr['speedup_vs_pytorch']:.2f}x")
        lines.append(line)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- CLI
def _jit_arg(value: str):
    value = value.lower()
    if value in ("auto",):
        return "auto"
    if value in ("1", "true", "on", "yes", "xla"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, on or off, got {value!r}")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="base", help="base, large, xlarge, or a config.json path (default base)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio seconds per row (default 10)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--jit-compile", type=_jit_arg, default="auto", metavar="{auto,on,off}",
                   help="XLA for the inference function (default auto)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--padded", action="store_true",
                   help="rows of 50-100%% of --seconds, zero-padded, with an attention mask")
    p.add_argument("--compare-pytorch", action="store_true",
                   help="time the reference transformers HubertModel alongside (needs torch, transformers)")
    p.add_argument("--train", action="store_true", help="also time a training step (HubertForCTC)")
    p.add_argument("--train-batch-size", type=int, default=2)
    p.add_argument("--train-seconds", type=float, default=5.0)
    p.add_argument("--train-repeats", type=int, default=5)
    p.add_argument("--train-jit-compile", type=_jit_arg, default="auto", metavar="{auto,on,off}")
    p.add_argument("--matmul-seconds", type=float, default=2.0, help="matmul micro-benchmark duration (default 2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    # SUPPRESS: does not override a `--quiet` given before the command (`hubert-tf --quiet bench`)
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress messages")
    p.add_argument("--output", "-o", help="also write the JSON report to this file")


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Mounts `bench` on a CLI's subparsers (`hubert-tf bench ...`)."""
    p = subparsers.add_parser("bench", help="speed on this machine (ms/call, GFLOP/s, vs PyTorch)",
                              description=__doc__.splitlines()[0])
    _add_arguments(p)
    p.set_defaults(func=run_bench)
    return p


def run_bench(args: argparse.Namespace) -> int:
    """Runs the benchmark from parsed arguments and prints the report; returns the exit code (0)."""
    report = benchmark(
        model=args.model, seconds=args.seconds, batch_size=args.batch_size, dtype=args.dtype,
        jit_compile=args.jit_compile, repeats=args.repeats, warmup=args.warmup, padded=args.padded,
        compare_pytorch=args.compare_pytorch, train=args.train, train_batch_size=args.train_batch_size,
        train_seconds=args.train_seconds, train_repeats=args.train_repeats,
        train_jit_compile=args.train_jit_compile, matmul_seconds=args.matmul_seconds,
        log=(lambda message: None) if getattr(args, "quiet", False) else None,
    )
    text = json.dumps(report, indent=2) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    sys.stdout.write(text if args.json else format_report(report))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubert_tf.benchmark", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
