"""What `hubert_tf.benchmark` compares against: the transformers reference in PyTorch (same config and
weights), and that model (or ours) exported to ONNX and run in ONNX Runtime, float32 or int8.

torch, transformers and onnxruntime are imported only inside the functions that need them.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable


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


# ----------------------------------------------------------------------------------------- ONNX Runtime
# How `--onnx-export auto` makes the ONNX model: the transformers reference through torch.onnx.export
# when torch and transformers import (the exporters in the order tried), else hubert_tf's own tf2onnx
# export (`hubert_tf.onnx`).
ONNX_EXPORTS = ("auto", "torch-legacy", "torch-dynamo", "tf2onnx")
AUTO_TORCH_EXPORTERS = ("torch-legacy", "torch-dynamo")
ONNX_OPSET = 18  # the dynamo exporter's own opset (converting it down fails); LayerNormalization is one op


def export_reference_onnx(tf_model, path: str, attention_mask: bool, exporter: str = "torch-legacy") -> str:
    """Exports the transformers reference of `tf_model` (`reference_model`: same config and weights) to
    an ONNX file with dynamic batch and length axes, as a user of transformers would for onnxruntime.

    Args:
        tf_model: a float32 TFHubertModel.
        path: the .onnx file to write.
        attention_mask: give the graph an int64 `attention_mask` input (padded batches).
        exporter: "torch-legacy" (TorchScript tracing, `dynamo=False`) or "torch-dynamo" (`dynamo=True`,
            needs onnxscript).
    Returns:
        `path`. Inputs `input_values` float32 [batch, samples] (and `attention_mask`), output
        `last_hidden_state` float32 [batch, frames, hidden].

    Example:

    >>> export_reference_onnx(TFHubertModel(config), "/tmp/ref.onnx", attention_mask=False)  # doctest: +SKIP
    """
    import warnings

    import numpy as np
    import torch

    if exporter not in ("torch-legacy", "torch-dynamo"):
        raise ValueError(f"exporter must be 'torch-legacy' or 'torch-dynamo', got {exporter!r}")
    model = reference_model(tf_model).eval()
    samples = max(2 * tf_model.config.receptive_field, 16000)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, samples)).astype(np.float32))
    names = ["input_values"] + (["attention_mask"] if attention_mask else [])
    args = (x,) + ((torch.ones(x.shape, dtype=torch.int64),) if attention_mask else ())
    axes = {name: {0: "batch", 1: "samples"} for name in names}
    axes["last_hidden_state"] = {0: "batch", 1: "frames"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in shape arithmetic
        torch.onnx.export(model, args, path, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=exporter == "torch-dynamo")
    return path


def make_onnx_model(tf_model, directory: str, attention_mask: bool, export: str = "auto",
                    log: Callable[[str], None] = lambda message: None) -> tuple[str, dict[str, Any]]:
    """The ONNX model the benchmark runs: writes it under `directory` and says how it was made.

    Args:
        export: "auto" (the transformers reference when torch and transformers import, trying
            `AUTO_TORCH_EXPORTERS` in order; hubert_tf's tf2onnx export otherwise), "torch-legacy",
            "torch-dynamo" or "tf2onnx".
    Returns:
        (path, {"onnx_source": "transformers" | "hubert_tf", "exporter", "export_seconds"} plus
        "export_errors" for exporters that failed before one worked).
    """
    if export not in ONNX_EXPORTS:
        raise ValueError(f"onnx export must be one of {list(ONNX_EXPORTS)}, got {export!r}")
    if export == "auto":
        exporters = list(AUTO_TORCH_EXPORTERS) if _torch_available() else ["tf2onnx"]
    else:
        exporters = [export]
    if any(e != "tf2onnx" for e in exporters) and not _torch_available():
        raise RuntimeError(f"--onnx-export {export} needs torch and transformers importable in this environment")
    errors = {}
    for exporter in exporters:
        path = os.path.join(directory, f"{exporter}.onnx")
        log(f"exporting to ONNX ({exporter})")
        start = time.perf_counter()
        try:
            if exporter == "tf2onnx":
                from .onnx import export_onnx

                export_onnx(tf_model, path, attention_mask=attention_mask)
            else:
                export_reference_onnx(tf_model, path, attention_mask, exporter)
        except Exception as error:  # noqa: BLE001 - an exporter's failure: try the next, report all if none works
            errors[exporter] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
            log(f"  {exporter} failed: {errors[exporter]}")
            continue
        info = {"onnx_source": "hubert_tf" if exporter == "tf2onnx" else "transformers", "exporter": exporter,
                "export_seconds": time.perf_counter() - start}
        if errors:
            info["export_errors"] = errors
        return path, info
    raise RuntimeError(f"no ONNX exporter worked: {errors}")


def ort_session(path: str, threads: int):
    """An onnxruntime CPU session as a speed-minded user builds one: `threads` intra-op threads, one
    inter-op thread, sequential execution, every graph optimisation (ORT_ENABLE_ALL)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # no warnings about unused initializers on every load
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_feeds(session, audio, mask) -> dict[str, Any]:
    """Feeds for an ONNX HuBERT `session` (inputs `input_values` and optionally `attention_mask`, int32
    or int64): the audio and the mask (all ones when the graph takes one and `mask` is None).

    Raises:
        ValueError: the graph has no `input_values` input, or needs other inputs.
    """
    import numpy as np

    inputs = {i.name: i for i in session.get_inputs()}
    if "input_values" not in inputs or set(inputs) - {"input_values", "attention_mask"}:
        raise ValueError(f"the ONNX model must take input_values (and optionally attention_mask); its inputs "
                         f"are {sorted(inputs)}")
    feeds = {"input_values": audio}
    if "attention_mask" in inputs:
        dtype = np.int64 if inputs["attention_mask"].type == "tensor(int64)" else np.int32
        feeds["attention_mask"] = (np.ones(audio.shape, dtype) if mask is None else mask.astype(dtype))
    elif mask is not None:
        raise ValueError("the ONNX model has no attention_mask input, and the benchmark input is padded")
    return feeds


def quantize_onnx(path: str, out_path: str, per_channel: bool = False) -> str:
    """onnxruntime's dynamic-range int8 quantisation of an ONNX model (`quantize_dynamic`, QInt8
    weights; per output channel with `per_channel`): what an ONNX Runtime user does for int8 on CPU.

    The model is first constant-folded by onnxruntime's basic graph optimisations (saved next to
    `out_path`): the transformers export computes the positional conv's weight-normed kernel in the
    graph, and `quantize_dynamic` quantises only convs whose weight is an initializer (it raises
    "Expected ... to be an initializer" otherwise).
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = os.path.splitext(out_path)[0] + ".folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = folded
    options.log_severity_level = 3
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    quantize_dynamic(folded, out_path, weight_type=QuantType.QInt8, per_channel=per_channel)
    return out_path
