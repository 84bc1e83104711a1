"""Speed of hubert_tf on this machine: `python -m hubert_tf.benchmark` (or `hubert-tf bench`).

Builds a model of a named size with random weights and reports, for N seconds of audio at batch B:
milliseconds per call (median of alternated repeats after warm-up), real-time factor, achieved GFLOP/s
next to the machine's own matrix-multiply GFLOP/s in the same dtype (measured in the same run), peak
memory, graph traces, the time of each part of the forward pass (conv feature encoder, feature
projection + positional conv, Transformer layers, head), and optionally a training step, the reference
PyTorch model, ONNX Runtime (the transformers reference exported with torch.onnx.export, or hubert_tf's
own tf2onnx export) and the int8 paths (hubert_tf's and ONNX Runtime's quantize_dynamic) side by side.
The report names the CPU's vector ISA (`hubert_tf.cpu.describe()`).

FLOPs are counted analytically by `count_flops`: one multiply-add is 2 FLOPs, and only the matrix
products and convolutions are counted (norms, activations, softmax, biases and residual adds are a
fraction of a percent and left out). The base model on 10 s of audio is ~148 GFLOP.

Examples:

    python -m hubert_tf.benchmark                                  # base, 10 s, batch 1, float32
    python -m hubert_tf.benchmark --dtype bfloat16 --compare-pytorch
    python -m hubert_tf.benchmark --batch-size 8 --padded          # 8 rows of 5-10 s, padded
    python -m hubert_tf.benchmark --train --json                   # + a training step, JSON output
    python -m hubert_tf.benchmark --compare-onnxruntime --threads 2  # vs ONNX Runtime, 2 threads each
    python -m hubert_tf.benchmark --compare-onnxruntime --int8     # + int8: ours and ORT quantize_dynamic

Timings on a shared machine are noisy and bimodal: implementations are called in alternation and both
the median and the fastest call (`min_ms`) are reported, with every ratio computed from both;
`load_average` in the report shows whether anything else was running.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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


def matmul_gflops(dtype: str = "float32", shape: tuple[int, int, int] = (512, 768, 3072), seconds: float = 1.0,
                  fastest: bool = False) -> float:
    """The machine's matrix-multiply speed in GFLOP/s for `dtype`: a compiled [m, k] @ [k, n] product
    (a feed-forward layer on ~10 s of audio by default), median of calls over `seconds` (`fastest`:
    the fastest call instead, the figure to compare fastest-of-N model calls with under load)."""
    samples = _matmul_seconds(dtype, shape, seconds)
    m, k, n = shape
    return 2 * m * k * n / (min(samples) if fastest else statistics.median(samples)) / 1e9


def _matmul_seconds(dtype: str, shape: tuple[int, int, int], seconds: float) -> list[float]:
    """Seconds per product of the `matmul_gflops` micro-benchmark, one sample per batch of products."""
    call, inner = matmul_call(dtype, shape)
    samples, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) / inner)
    return samples


def matmul_call(dtype: str = "float32", shape: tuple[int, int, int] = (512, 768, 3072), inner: int = 8):
    """(call, inner): `call()` runs `inner` compiled [m, k] @ [k, n] products (warmed up), so that the
    per-call overhead does not count. The benchmark alternates it with the model calls: the roofline
    figure then sees the same load as the model."""
    import tensorflow as tf

    m, k, n = shape
    a = tf.cast(tf.random.stateless_normal([m, k], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([k, n], seed=[3, 4]), dtype)
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    for _ in range(3):
        matmul(a, b).numpy()

    def call():
        for _ in range(inner):
            out = matmul(a, b)
        return out.numpy()

    return call, inner


def machine_description() -> dict[str, Any]:
    """The CPU (`hubert_tf.cpu.describe()`: model, ISA, native bfloat16, cores), the load, the library
    versions and the thread-related environment variables."""
    import tensorflow as tf

    from . import cpu

    info = {
        **cpu.describe(), "tensorflow": tf.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    blas = {k: v for k, v in os.environ.items()
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "TF_", "XLA_FLAGS", "ONEDNN_", "DNNL_"))
            and k != "TF_CLI_CONFIG_FILE"}
    if blas:
        info["environment"] = blas
    return info


# ----------------------------------------------------------------------------------------- threads
# Inter-op threads with `--threads N`: the HuBERT graph is one chain of ops, so a second inter-op
# thread has nothing to run in parallel and only competes with the intra-op pool for the cores (1 vs 2
# on 2 cores, fresh processes alternated: no difference beyond the neighbours' noise); ORT runs with 1 too.
INTER_OP_THREADS = 1


def configure_threads(threads: int | None) -> dict[str, int]:
    """Sets TensorFlow's intra-op threads to `threads` (and inter-op to `INTER_OP_THREADS`); must run
    before TensorFlow executes any op. None leaves TensorFlow's defaults (0 = one per core).

    Returns {"tensorflow_intra_op", "tensorflow_inter_op"} as TensorFlow reports them (0 = its default).

    Raises:
        ValueError: `threads` is not a positive int.
        RuntimeError: TensorFlow already ran ops with other settings (start a fresh process).
    """
    import tensorflow as tf

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        threading = tf.config.threading
        wanted = (threads, INTER_OP_THREADS)
        current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
        if current != wanted:
            try:
                threading.set_intra_op_parallelism_threads(threads)
                threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
            except RuntimeError:
                raise RuntimeError(
                    f"threads={threads}: TensorFlow already runs with intra-op {current[0]} / inter-op "
                    f"{current[1]} threads (0 = default); thread counts can only be set before TensorFlow "
                    "runs its first op: run the benchmark in a fresh process") from None
    return {"tensorflow_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tensorflow_inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


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


from .bench_reference import (  # noqa: F401  (the benchmark's public names, re-exported)
    _torch_available, _reference_config, reference_model, ONNX_EXPORTS, AUTO_TORCH_EXPORTERS, ONNX_OPSET, export_reference_onnx, make_onnx_model, ort_session, ort_feeds, quantize_onnx,
)


# ----------------------------------------------------------------------------------------- parts
PARTS = ("feature_encoder", "projection_positional", "transformer_layers", "head")


def part_functions(model, jit_compile: bool = False) -> dict[str, Callable]:
    """The model's forward pass cut into parts, each its own compiled `tf.function` on the previous
    part's output (the same sub-layers the whole call runs, in its order):

        feature_encoder(input_values) -> conv features
        projection_positional(features, frame_mask) -> feature projection, padding zeroed, + positional
            conv (and the encoder's layer norm in post-LN models)
        transformer_layers(hidden, bias) -> every Transformer layer (and the final layer norm in pre-LN
            models)
        head(hidden) -> CTC logits (only for models with an `lm_head`)

    `frame_mask`/`bias` are None without an attention mask (see `part_inputs`).
    """
    import tensorflow as tf

    body = model.hubert
    encoder = body.encoder

    def feature_encoder(x):
        return body.feature_extractor(tf.cast(x, body.compute_dtype))

    def projection_positional(features, frame_mask):
        hidden = body.feature_projection(features, training=False)
        if frame_mask is not None:
            hidden = hidden * tf.cast(frame_mask, hidden.dtype)[:, :, None]
        hidden = hidden + encoder.pos_conv_embed(hidden, training=False)
        return hidden if encoder.stable_layer_norm else encoder.layer_norm(hidden)

    def transformer_layers(hidden, bias):
        for layer in encoder.layers:
            hidden, _ = layer(hidden, bias=bias, training=False)
        return encoder.layer_norm(hidden) if encoder.stable_layer_norm else hidden

    parts = {"feature_encoder": feature_encoder, "projection_positional": projection_positional,
             "transformer_layers": transformer_layers}
    if hasattr(model, "lm_head"):
        parts["head"] = lambda hidden: tf.cast(model.lm_head(hidden), tf.float32)
    return {name: tf.function(fn, jit_compile=jit_compile) for name, fn in parts.items()}


def part_inputs(model, x, mask, features):
    """(frame_mask, attention bias) for the parts from the attention mask, as the main layer makes
    them; (None, None) without a mask."""
    import tensorflow as tf

    from .modeling.attention import padding_bias
    from .modeling.masking import frame_lengths, lengths_to_mask, sample_lengths

    if mask is None:
        return None, None
    frames = tf.shape(features)[1]
    frame_mask = lengths_to_mask(frame_lengths(sample_lengths(x, mask), model.config, frames), frames)
    return frame_mask, padding_bias(frame_mask, model.hubert.compute_dtype)


def part_flops(config, num_samples: int, batch_size: int, with_head: bool) -> dict[str, int]:
    """FLOPs of each part of `part_functions` (from `flop_breakdown`; the head: its one dense layer)."""
    b = flop_breakdown(config, num_samples, batch_size)
    out = {
        "feature_encoder": b["feature_encoder"],
        "projection_positional": b["feature_projection"] + b["positional_conv"],
        "transformer_layers": b["attention_projections"] + b["attention_scores"] + b["feed_forward"],
    }
    if with_head:
        frames = _conv_frames_all(config, num_samples)
        out["head"] = 2 * batch_size * frames * config.hidden_size * config.vocab_size
    return out


def _conv_frames_all(config, num_samples: int) -> int:
    from .modeling.masking import conv_output_lengths

    return max(int(conv_output_lengths(num_samples, config.conv_kernel, config.conv_stride)), 0)


def time_parts(model, x, mask, whole_call: Callable[[], Any], whole_output, num_samples: int, repeats: int,
               jit_compile: bool = False, warmup: int = 1) -> dict[str, Any]:
    """Each part of `part_functions` timed on the real intermediate tensors, alternated with the whole
    call (`whole_call`), fastest-of-N and median, with its FLOPs and GFLOP/s.

    Returns {"parts": {name: {median_ms, min_ms, ..., gflop, gflops_min, gflops_median}},
    "sum_min_ms", "sum_median_ms", "whole_min_ms", "whole_median_ms", "sum_over_whole_min",
    "max_abs_diff_vs_whole"} (the chained parts' output against `whole_output`: they are the model).
    """
    import numpy as np

    fns = part_functions(model, jit_compile)
    features = fns["feature_encoder"](x)
    frame_mask, bias = part_inputs(model, x, mask, features)
    hidden = fns["projection_positional"](features, frame_mask)
    last = fns["transformer_layers"](hidden, bias)
    args = {"feature_encoder": (x,), "projection_positional": (features, frame_mask),
            "transformer_layers": (hidden, bias)}
    out = last
    if "head" in fns:
        args["head"] = (last,)
        out = fns["head"](last)
    calls = {"whole": whole_call}
    for name, fn in fns.items():
        calls[name] = (lambda fn=fn, a=args[name]: fn(*a).numpy())
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = time_alternating(calls, repeats)
    flops = part_flops(model.config, num_samples, int(x.shape[0]), "head" in fns)
    parts = {}
    for name in fns:
        t = summarize(times[name])
        parts[name] = {**t, "gflop": flops[name] / 1e9, "gflops_min": flops[name] / t["min_ms"] / 1e6,
                       "gflops_median": flops[name] / t["median_ms"] / 1e6}
    whole = summarize(times["whole"])
    sum_min = sum(p["min_ms"] for p in parts.values())
    return {
        "parts": parts, "sum_min_ms": sum_min, "sum_median_ms": sum(p["median_ms"] for p in parts.values()),
        "whole_min_ms": whole["min_ms"], "whole_median_ms": whole["median_ms"],
        "sum_over_whole_min": sum_min / whole["min_ms"],
        "max_abs_diff_vs_whole": float(np.max(np.abs(np.asarray(out, np.float32) - whole_output))),
    }


# ----------------------------------------------------------------------------------------- benchmark
def benchmark(model: str = "base", seconds: float = 10.0, batch_size: int = 1, dtype: str = "float32",
              jit_compile: str | bool = "auto", repeats: int = 10, warmup: int = 2, padded: bool = False,
              compare_pytorch: bool = False, compare_onnxruntime: bool = False, onnx_model: str | None = None,
              onnx_export: str = "auto", threads: int | None = None, parts: bool = True, int8: bool = False,
              ort_int8_per_channel: bool = False, train: bool = False, train_batch_size: int = 2,
              train_seconds: float = 5.0, train_repeats: int = 5, train_jit_compile: str | bool = "auto",
              matmul_seconds: float = 2.0, config=None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the benchmark and returns the report as a dict (see `format_report`).

    Every implementation compared runs in one alternating loop (`time_alternating`); each gets a
    median and a fastest-of-N (`min_ms`) figure, and every ratio is given from both, since a
    neighbour's load makes single timings bimodal.

    Args:
        model: preset name or config.json path (ignored when `config` is given).
        seconds, batch_size: audio length per row and rows per call.
        dtype: "float32" or "bfloat16" (a Keras dtype policy; norms and softmax stay float32).
        jit_compile: True / False / "auto" for `hubert_tf.modeling.inference.inference_function`.
        repeats, warmup: timed and untimed calls.
        padded: rows of different lengths with an attention mask (throughput of a real batch).
        compare_pytorch: time the reference PyTorch HubertModel (same config, weights and input) in
            alternation with ours; needs torch and transformers.
        compare_onnxruntime: time an ONNX model of the same weights in onnxruntime alongside (see
            `make_onnx_model`, `ort_session`); needs onnxruntime.
        onnx_model: an existing .onnx file to run instead of exporting one (its inputs `input_values`
            and optionally `attention_mask`; it should hold this model's weights for the diff to mean
            anything).
        onnx_export: how to make the ONNX model: "auto", "torch-legacy", "torch-dynamo" or "tf2onnx".
        threads: intra-op threads of TensorFlow, PyTorch and onnxruntime (None: TensorFlow's and
            PyTorch's defaults, onnxruntime one per core). Must be set before TensorFlow runs its first
            op (`configure_threads`): use a fresh process.
        parts: also time the parts of the forward pass separately (`time_parts`).
        int8: also time `hubert_tf.quantization.quantized_inference_function` (and, with
            `compare_onnxruntime`, onnxruntime's `quantize_dynamic` of the ONNX model) with its error
            against our float32 output.
        ort_int8_per_channel: per-channel weight scales for onnxruntime's int8 model.
        train: also time a training step of HubertForCTC on `train_batch_size` x `train_seconds`.
        matmul_seconds: duration of the matmul micro-benchmark run alone first (`matmul_gflops_alone`);
            `matmul_gflops` (the roofline of `matmul_fraction`) comes from products alternated with the calls.
        config: a HubertConfig to use instead of `model`.
        log: progress messages (to stderr by default).

    Example:

    >>> report = benchmark("base", compare_onnxruntime=True, threads=2)  # doctest: +SKIP
    >>> report["speed_vs_onnxruntime"]  # ORT time / our time: > 1 means hubert_tf is faster  # doctest: +SKIP
    {'median': 1.12, 'min': 1.15}
    """
    import importlib.util
    import tempfile

    import numpy as np
    import tensorflow as tf

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    thread_info = configure_threads(threads)  # before any TensorFlow op

    from .modeling import TFHubertModel
    from .modeling.inference import inference_function, resolve_jit_compile

    given_config = config is not None
    config = config if given_config else resolve_config(model)
    if compare_pytorch and not _torch_available():
        raise RuntimeError("--compare-pytorch needs torch and transformers importable in this environment")
    if (compare_onnxruntime or onnx_model) and importlib.util.find_spec("onnxruntime") is None:
        raise RuntimeError("--compare-onnxruntime needs onnxruntime importable in this environment "
                           "(pip install onnxruntime)")
    compare_onnxruntime = compare_onnxruntime or onnx_model is not None
    if onnx_model is not None and not os.path.isfile(onnx_model):
        raise OSError(f"--onnx-model {onnx_model}: no such file")
    if compare_onnxruntime and onnx_model is None and onnx_export not in ONNX_EXPORTS:
        raise ValueError(f"onnx_export must be one of {list(ONNX_EXPORTS)}, got {onnx_export!r}")
    if int8:
        quantization = _quantization_module()
    num_samples = int(round(seconds * SAMPLING_RATE))
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {
        "model": "config" if given_config else model,
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                  "intermediate_size", "feat_extract_norm", "do_stable_layer_norm")},
        "seconds": seconds, "batch_size": batch_size, "dtype": dtype, "padded": padded,
        "machine": machine_description(), "threads": {"requested": threads, **thread_info},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    flops = count_flops(config, num_samples, batch_size)
    report["gflop"] = flops / 1e9
    report["gflop_breakdown"] = {k: v / 1e9 for k, v in flop_breakdown(config, num_samples, batch_size).items()}

    log(f"matmul micro-benchmark ({dtype})")
    shape = (512, 768, 3072)
    matmul_flop = 2 * shape[0] * shape[1] * shape[2]
    report["matmul_gflops_alone"] = matmul_flop / statistics.median(_matmul_seconds(dtype, shape, matmul_seconds)) / 1e9

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
    tf_peak_rss = peak_rss_mb()  # before the other runtimes exist
    valid = np.ones(tf_out.shape[:2], bool) if mask is None else _frame_mask(tf_model, lengths, tf_out.shape[1])

    def warm(call):
        out = call()
        for _ in range(max(warmup - 1, 0)):
            call()
        return out

    # the matmul roofline runs in the same alternation as the implementations (same load)
    matmul, matmul_inner = matmul_call(dtype, shape)
    calls = {"tensorflow": tf_call, "matmul": matmul}
    torch_model = None
    if compare_pytorch or (compare_onnxruntime and onnx_model is None and _torch_available()
                           and onnx_export != "tf2onnx"):
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
    if compare_pytorch:
        log("building the reference PyTorch HubertModel (sdpa)")
        torch_model = reference_model(tf_model).eval()
        tx = torch.from_numpy(audio)
        tm = None if mask is None else torch.from_numpy(mask.astype(np.int64))

        def torch_call():
            with torch.inference_mode():
                return torch_model(tx, attention_mask=tm).last_hidden_state.numpy()

        torch_out = warm(torch_call)
        report["max_abs_diff_vs_pytorch"] = float(np.max(np.abs(tf_out[valid] - torch_out[valid])))
        report["pytorch"] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        calls["pytorch"] = torch_call

    int8_out = {}
    if int8:
        log("building the int8 inference function (hubert_tf.quantization)")
        start = time.perf_counter()
        qfn = quantization.quantized_inference_function(tf_model)

        def int8_call():
            return np.asarray(qfn(x, m)["last_hidden_state"])

        int8_out["tensorflow_int8"] = warm(int8_call)
        report["tensorflow_int8"] = {"build_and_warmup_seconds": time.perf_counter() - start}
        calls["tensorflow_int8"] = int8_call

    with tempfile.TemporaryDirectory(prefix="hubert_tf_bench_") as tmp:
        if compare_onnxruntime:
            import onnxruntime

            ort_threads = threads or cores
            if onnx_model is not None:
                onnx_path, info = onnx_model, {"onnx_source": "file", "exporter": None, "path": onnx_model}
            else:
                onnx_path, info = make_onnx_model(tf_model, tmp, attention_mask=mask is not None,
                                                  export=onnx_export, log=log)
            session = ort_session(onnx_path, ort_threads)
            feeds = ort_feeds(session, audio, mask)

            def ort_call(session=session):
                return session.run(None, feeds)[0]

            ort_out = warm(ort_call)
            report["onnxruntime"] = {"onnxruntime": onnxruntime.__version__, "intra_op_threads": ort_threads,
                                     "inter_op_threads": 1, "graph_optimization": "ORT_ENABLE_ALL",
                                     "execution_mode": "ORT_SEQUENTIAL", **info}
            report["max_abs_diff_vs_onnxruntime"] = _max_diff(tf_out, ort_out, valid)
            calls["onnxruntime"] = ort_call
            if int8:
                log("quantising the ONNX model (onnxruntime quantize_dynamic, QInt8)")
                start = time.perf_counter()
                int8_path = quantize_onnx(onnx_path, os.path.join(tmp, "int8.onnx"), ort_int8_per_channel)
                int8_session = ort_session(int8_path, ort_threads)
                report["onnxruntime_int8"] = {"quantize_seconds": time.perf_counter() - start,
                                              "per_channel": ort_int8_per_channel, "weight_type": "QInt8"}

                def ort_int8_call(session=int8_session):
                    return session.run(None, feeds)[0]

                int8_out["onnxruntime_int8"] = warm(ort_int8_call)
                calls["onnxruntime_int8"] = ort_int8_call

        log(f"timing {repeats} calls each of {', '.join(calls)}, alternating")
        times = time_alternating(calls, repeats, pause=0.05)
    del calls
    report["matmul_gflops"] = matmul_flop * matmul_inner / statistics.median(times["matmul"]) / 1e9
    report["matmul_gflops_fastest"] = matmul_flop * matmul_inner / min(times["matmul"]) / 1e9
    tf_time = statistics.median(times["tensorflow"])
    audio_seconds = sum(lengths) / SAMPLING_RATE
    report["tensorflow"] = {
        **summarize(times["tensorflow"]),
        "real_time_factor": tf_time / audio_seconds,
        "audio_seconds_per_second": audio_seconds / tf_time,
        "gflops": flops / tf_time / 1e9,
        "gflops_min": flops / min(times["tensorflow"]) / 1e9,
        "matmul_fraction": flops / tf_time / 1e9 / report["matmul_gflops"],
        # the fastest call against the fastest matmul: both the least disturbed by other load
        "matmul_fraction_min": flops / min(times["tensorflow"]) / 1e9 / report["matmul_gflops_fastest"],
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
        report["speed_vs_pytorch"] = speed_ratios(times["pytorch"], times["tensorflow"])
    if compare_onnxruntime:
        report["onnxruntime"].update(summarize(times["onnxruntime"]))
        report["onnxruntime"]["gflops"] = flops / statistics.median(times["onnxruntime"]) / 1e9
        report["onnxruntime"]["gflops_min"] = flops / min(times["onnxruntime"]) / 1e9
        report["speed_vs_onnxruntime"] = speed_ratios(times["onnxruntime"], times["tensorflow"])
    for name, reference in (("tensorflow_int8", "tensorflow"), ("onnxruntime_int8", "onnxruntime")):
        if name in int8_out:
            report[name].update(summarize(times[name]))
            # speed of the int8 model: its float32 counterpart's time / its time (> 1: int8 is faster)
            report[name]["speed_vs_float32"] = speed_ratios(times[reference], times[name])
            report[name]["speed_vs_tensorflow_float32"] = speed_ratios(times["tensorflow"], times[name])
            report[name]["relative_rms_error_vs_float32"] = quantization.relative_rms_error(
                int8_out[name][valid], tf_out[valid])
            report[name]["max_abs_diff_vs_float32"] = _max_diff(tf_out, int8_out[name], valid)
    del torch_model
    gc.collect()

    if parts:
        log(f"timing the parts ({repeats} calls each, alternating with the whole call)")
        report["parts"] = time_parts(tf_model, x, m, tf_call, tf_out, num_samples, repeats, jit_compile=jit)

    if train:
        report["train"] = benchmark_training(
            config, dtype=dtype, batch_size=train_batch_size, seconds=train_seconds, repeats=train_repeats,
            warmup=warmup, jit_compile=train_jit_compile, compare_pytorch=compare_pytorch, log=log,
        )
    return report


def speed_ratios(other_seconds: Sequence[float], our_seconds: Sequence[float]) -> dict[str, float]:
    """How much faster "ours" is than "other" (> 1: ours is faster), from `time_alternating`'s samples:
    {"median": median(other) / median(ours), "min": min(other) / min(ours), "paired_median": the
    median over rounds of other[i] / ours[i]} (neighbouring calls see similar load, so the paired
    ratio is the steadiest of the three when the load changes during the run)."""
    return {"median": statistics.median(other_seconds) / statistics.median(our_seconds),
            "min": min(other_seconds) / min(our_seconds),
            "paired_median": statistics.median(o / u for o, u in zip(other_seconds, our_seconds))}


def _max_diff(a, b, valid) -> float:
    import numpy as np

    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {a.shape} vs {b.shape} (is the ONNX model this model?)")
    return float(np.max(np.abs(a[valid] - np.asarray(b, np.float32)[valid])))


def _quantization_module():
    """hubert_tf.quantization, or a RuntimeError saying --int8 needs it."""
    try:
        from . import quantization
    except ImportError as error:
        raise RuntimeError(f"--int8 needs hubert_tf.quantization ({error})") from None
    return quantization


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
    th = report.get("threads", {})
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m.get('isa', '?')}"
        f"{', native bfloat16' if m.get('native_bfloat16') else ', no native bfloat16'}, "
        f"TensorFlow {m['tensorflow']}" + (f", load {load[0]:.2f}" if load else "")
        + (f", ONEDNN_MAX_CPU_ISA={m['environment']['ONEDNN_MAX_CPU_ISA']}"
           if "ONEDNN_MAX_CPU_ISA" in m.get("environment", {}) else ""),
        f"threads: requested {th.get('requested')}, TensorFlow intra-op {th.get('tensorflow_intra_op')} / "
        f"inter-op {th.get('tensorflow_inter_op')} (0 = default){'; measured ' + report['measured_at'] if 'measured_at' in report else ''}",
        f"model: {report['model']} ({report['parameters'] / 1e6:.1f}M parameters), {report['dtype']}, "
        f"batch {report['batch_size']} x {report['seconds']:g} s{' (padded)' if report['padded'] else ''}, "
        f"jit_compile={report['jit_compile']}, {report['gflop']:.1f} GFLOP per call",
        f"tensorflow: {t['median_ms']:.1f} ms/call (median of {t['repeats']}, min {t['min_ms']:.1f}), "
        f"real-time factor {t['real_time_factor']:.4f} ({t['audio_seconds_per_second']:.1f} s of audio per s), "
        f"{t['gflops']:.1f} GFLOP/s = {100 * t['matmul_fraction']:.0f}% of the {report['dtype']} matmul "
        f"{report['matmul_gflops']:.1f} GFLOP/s (alternated with the calls; median)"
        + (f"; fastest call {t['gflops_min']:.1f} GFLOP/s = {100 * t['matmul_fraction_min']:.0f}% of the "
           f"fastest matmul {report['matmul_gflops_fastest']:.1f} GFLOP/s"
           if "gflops_min" in t else ""),
        f"  first call {report['first_call_ms']:.0f} ms, new length first call {t['new_length_first_call_ms']:.0f} ms, "
        f"{t['traces']} graph trace(s), peak RSS {t['peak_rss_mb']:.0f} MiB",
    ]
    if "pytorch" in report:
        p = report["pytorch"]
        lines.append(
            f"pytorch {p['torch']} (reference HubertModel, sdpa, float32, {p['threads']} threads): "
            f"{p['median_ms']:.1f} ms/call (min {p['min_ms']:.1f}), {p['gflops']:.1f} GFLOP/s; "
            f"tensorflow is {report['speedup_vs_pytorch']:.2f}x faster (fastest calls: "
            f"{report['speed_vs_pytorch']['min']:.2f}x); max |diff| "
            f"{report['max_abs_diff_vs_pytorch']:.2e}"
        )
    if "onnxruntime" in report:
        o, r = report["onnxruntime"], report["speed_vs_onnxruntime"]
        source = {"transformers": f"transformers HubertModel exported with {o['exporter']}",
                  "hubert_tf": "hubert_tf's own tf2onnx export", "file": o.get("path")}.get(o["onnx_source"])
        lines.append(
            f"onnxruntime {o['onnxruntime']} ({source}, {o['intra_op_threads']} intra-op threads, "
            f"ORT_ENABLE_ALL): {o['median_ms']:.1f} ms/call (min {o['min_ms']:.1f}), {o['gflops']:.1f} GFLOP/s; "
            f"max |diff| {report['max_abs_diff_vs_onnxruntime']:.2e}")
        lines.append(
            f"  ORT time / our time: {r['median']:.2f} (medians), {r['min']:.2f} (fastest calls), "
            f"{r['paired_median']:.2f} (median of alternated pairs); "
            f"> 1 means hubert_tf is faster")
    for name, label in (("tensorflow_int8", "hubert_tf int8"), ("onnxruntime_int8", "onnxruntime int8")):
        if name in report and "median_ms" in report[name]:
            q = report[name]
            lines.append(
                f"{label}: {q['median_ms']:.1f} ms/call (min {q['min_ms']:.1f}), "
                f"{q['speed_vs_float32']['median']:.2f}x its float32 (medians; fastest "
                f"{q['speed_vs_float32']['min']:.2f}x), {q['speed_vs_tensorflow_float32']['median']:.2f}x "
                f"hubert_tf float32; relative RMS error {100 * q['relative_rms_error_vs_float32']:.2f}%")
    if "parts" in report:
        p = report["parts"]
        lines.append(f"parts (each its own compiled function, fastest of {t['repeats']} / median):")
        for name, part in p["parts"].items():
            lines.append(f"  {name:<22} {part['min_ms']:8.1f} / {part['median_ms']:8.1f} ms  "
                         f"{part['gflop']:7.2f} GFLOP  {part['gflops_min']:6.1f} GFLOP/s")
        lines.append(f"  sum {p['sum_min_ms']:.1f} ms vs whole call {p['whole_min_ms']:.1f} ms (fastest): "
                     f"{p['sum_over_whole_min']:.2f}; parts vs whole max |diff| {p['max_abs_diff_vs_whole']:.1e}")
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


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


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
    p.add_argument("--compare-onnxruntime", action="store_true",
                   help="export the model to ONNX (the transformers reference when torch is installed, else "
                        "hubert_tf's tf2onnx export) and time onnxruntime alongside")
    p.add_argument("--onnx-model", metavar="PATH",
                   help="run this .onnx file in onnxruntime instead of exporting one (implies --compare-onnxruntime)")
    p.add_argument("--onnx-export", choices=ONNX_EXPORTS, default="auto",
                   help="how to make the ONNX model (default auto: torch-legacy, then torch-dynamo, else tf2onnx)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="intra-op threads for TensorFlow, PyTorch and onnxruntime (default: their defaults; "
                        "onnxruntime: the core count)")
    p.add_argument("--no-parts", dest="parts", action="store_false",
                   help="skip timing the parts (feature encoder, projection + positional conv, layers, head)")
    p.add_argument("--int8", action="store_true",
                   help="also time hubert_tf's int8 inference (and onnxruntime quantize_dynamic with "
                        "--compare-onnxruntime), with the error against float32")
    p.add_argument("--ort-int8-per-channel", action="store_true",
                   help="per-channel weight scales in onnxruntime's int8 model")
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
        compare_pytorch=args.compare_pytorch, compare_onnxruntime=args.compare_onnxruntime,
        onnx_model=args.onnx_model, onnx_export=args.onnx_export, threads=args.threads, parts=args.parts,
        int8=args.int8, ort_int8_per_channel=args.ort_int8_per_channel, train=args.train, train_batch_size=args.train_batch_size,
        train_seconds=args.train_seconds, train_repeats=args.train_repeats,
        train_jit_compile=args.train_jit_compile, matmul_seconds=args.matmul_seconds,
        log=(lambda message: None) if getattr(args, "quiet", False) else None,
    )
    text = json.dumps(report, indent=2) + "\n"
    if args.output:
        from .files import atomic_write

        with atomic_write(args.output, "w") as f:
            f.write(text)
    sys.stdout.write(text if args.json else format_report(report))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubert_tf.benchmark", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
