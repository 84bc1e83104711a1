"""ONNX export (onnxruntime, Triton, sherpa-onnx, transformers.js): an optional extra,
`pip install "hubert_tf[onnx]"` (tf2onnx, onnx and onnxruntime).

The converter is tf2onnx's `convert.from_function` on a `tf.function` that calls the model as a user does
(`model(input_values, attention_mask=..., training=False)`). Measured on Keras 3.15 / TF 2.21 / numpy 2 with
tf2onnx 1.17 and onnxruntime 1.32: parity ~5e-6 against Keras on the test fixtures, every shape dynamic.
(Keras' own `model.export(format="onnx")` is the same tf2onnx call behind a numpy-2 monkeypatch and needs
an explicit `input_signature`; tf2onnx's SavedModel path works too, but adds a disk round trip.)
Two tf2onnx 1.17 defects are worked around for the one conversion (`_tf2onnx_workarounds`): its Reshape
optimiser breaks models with a zero bias (every freshly initialised one), and its large-model path calls
`np.product`, gone in numpy 2. Every export is then checked in onnxruntime against Keras (`verify`).

The ONNX model (every dimension dynamic, named):

    input_values float32 [batch, samples] (normalised audio, as the feature extractor gives)
    attention_mask int32 [batch, samples] (1 = real sample, 0 = padding; `attention_mask=False` leaves it out)
    -> logits float32 [batch, frames, vocab_size] (CTC) or [batch, num_labels] (classification),
       or last_hidden_state float32 [batch, frames, hidden_size] (bare model);
       frame_lengths int32 [batch] (valid frames per row; frame outputs with a mask input only).

ONNX has no counterpart of the model's input assertions (tf2onnx drops Assert ops), so the graph is
traced without them and `onnx_session` checks inputs in Python before each run, as
`hubert_tf.export.tflite_interpreter` does for TFLite. The minimum input length is kept in the model's
metadata (`metadata_props["hubert_tf"]`, JSON) for other runtimes to read.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import numpy as np

EXTRA_HINT = 'pip install "hubert_tf[onnx]"'
METADATA_KEY = "hubert_tf"  # metadata_props entry: JSON with the minimum input length and the I/O names
MIN_OPSET = 13  # the first opset with ReduceSum's axes as an input and today's Softmax semantics
# One protobuf holds at most 2 GiB: models with more weight bytes than this (HuBERT XLarge) keep their
# weights in a sibling `<file>.data` (ONNX external data), which onnxruntime reads from the model's folder.
EXTERNAL_DATA_BYTES = 1_800_000_000
# `verify`'s tolerance, relative to the output's largest magnitude (at least 1): float reordering gives
# ~1e-6, the converter bugs it is there for give O(1) errors or wrong shapes.
VERIFY_RTOL = 1e-3


def _require(module: str, purpose: str):
    """Imports `module` or raises an ImportError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs the {module!r} package ({error}); install it with {EXTRA_HINT}") from None


def export_onnx(model, path: str | os.PathLike, opset: int | None = None, *, attention_mask: bool = True,
                verify: bool = True) -> str:
    """Converts `model` to an ONNX file with dynamic batch size and audio length.

    The file is written atomically (a crash never leaves a half-written model under `path`); parent
    directories are created; an existing file is replaced.

    Args:
        model: a HuBERT Keras model (`TFHubertModel`, `TFHubertForCTC`, `TFHubertForSequenceClassification`)
            with float32 weights.
        path: str or PathLike. The `.onnx` file to write. Models over `EXTERNAL_DATA_BYTES` of weights
            also write `<path>.data` next to it (keep the two together).
        opset: int. ONNX opset, from `MIN_OPSET` (13) to the newest tf2onnx knows (18 in tf2onnx 1.17).
            Defaults to None (tf2onnx's default, 15 in 1.17: onnxruntime >= 1.10).
        attention_mask: bool. Give the model an `attention_mask` input (and a `frame_lengths` output for
            frame-level outputs), for padded batches. Defaults to True (the SavedModel's `serving_default`
            inputs); False gives one `input_values` input (every sample valid).
        verify: bool. Run the converted model in onnxruntime on one second of random audio (batch 2,
            one row padded) and compare it with Keras before writing (a large model: after writing,
            removing the files on a mismatch). Defaults to True: converter bugs give wrong shapes or
            numbers, not errors (see `_tf2onnx_workarounds`).

    Returns:
        str, the path written.

    Raises:
        ImportError: tf2onnx or onnx (or, with `verify`, onnxruntime) is not installed (naming the
            `onnx` extra).
        ValueError: a bad `opset`, a model without a `config`, or a non-float32 model.
        RuntimeError: `verify` found the ONNX model failing or differing from Keras (not kept).

    Example:

    >>> import tempfile, numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> config = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
    ...                       conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4)
    >>> path = export_onnx(TFHubertModel(config), tempfile.mkdtemp() + "/hubert.onnx")
    >>> session = onnx_session(path)
    >>> x = np.zeros((2, 24000), "float32")
    >>> session(x, np.ones_like(x, "int32"))["last_hidden_state"].shape
    (2, 74, 32)
    """
    tf2onnx = _require("tf2onnx", "export_onnx")
    _require("onnx", "export_onnx")
    import tensorflow as tf

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "receptive_field"):
        raise ValueError(f"export_onnx needs a HuBERT model with a .config, got {type(model).__name__}")
    if model.compute_dtype != "float32" or any(w.dtype != "float32" for w in model.weights):
        raise ValueError(f"export_onnx needs a float32 model, got compute dtype {model.compute_dtype!r} "
                         "(reload it without dtype= / a mixed-precision policy)")
    opset = _check_opset(opset, tf2onnx)
    specs = [tf.TensorSpec([None, None], tf.float32, name="input_values")]
    if attention_mask:
        specs.append(tf.TensorSpec([None, None], tf.int32, name="attention_mask"))
    forward = _forward_function(model, specs)
    forward.get_concrete_function()  # builds an unbuilt model (its weights exist from here on)
    large = sum(int(np.prod(w.shape)) * 4 for w in model.weights) > EXTERNAL_DATA_BYTES
    with _tf2onnx_workarounds(tf2onnx, large):
        proto, storage = tf2onnx.convert.from_function(forward, input_signature=specs, opset=opset,
                                                       large_model=large)
    _main_output_first(proto)
    _name_dimensions(proto)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"min_samples": int(config.receptive_field), "inputs": [s.name for s in specs],
                              "outputs": [o.name for o in proto.graph.output], "model": type(model).__name__})
    proto.producer_name = f"hubert_tf (tf2onnx {tf2onnx.__version__})"
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not large:
        from .files import atomic_write

        content = proto.SerializeToString()
        if verify:
            _verify(content, forward, config, attention_mask)
        with atomic_write(path, "wb") as f:
            f.write(content)
        return path
    _write_with_external_data(proto, storage, path)
    if verify:
        try:
            _verify(path, forward, config, attention_mask)
        except BaseException:
            for name in (path, path + ".data"):
                if os.path.exists(name):
                    os.remove(name)
            raise
    return path


def onnx_session(path: str | os.PathLike, num_threads: int | None = None, providers=None) -> OnnxSession:
    """An onnxruntime session for a file from `export_onnx`, checking inputs before every run.

    Args:
        path: str or PathLike. The `.onnx` file.
        num_threads: int. Intra-op threads (onnxruntime's `intra_op_num_threads`). Defaults to the
            runtime's choice (one per physical core).
        providers: onnxruntime execution providers. Defaults to None (the CPU provider).

    Returns:
        an `OnnxSession`.

    Raises:
        ImportError: onnxruntime is not installed (naming the `onnx` extra).
        ValueError: `path` is not an ONNX model, or `num_threads` is not a positive int.

    Example:

    >>> session = onnx_session("hubert.onnx", num_threads=2)          # doctest: +SKIP
    >>> session(input_values, attention_mask)["logits"]               # doctest: +SKIP
    """
    ort = _require("onnxruntime", "onnx_session")
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    path = os.fspath(path)
    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime's Fail / InvalidProtobuf / NoSuchFile derive from it
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such ONNX model") from None
        raise ValueError(f"{path}: not an ONNX model onnxruntime can load ({str(error).splitlines()[0]})") from None
    info = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    min_samples = int(json.loads(info)["min_samples"]) if info else 1
    return OnnxSession(session, min_samples)


class OnnxSession:
    """An onnxruntime `InferenceSession` whose runs check HuBERT's inputs first (rank, length >= the
    receptive field, finite samples, attention mask of 0/1 with enough valid samples per row): the graph
    has no assertions, and would return garbage or a cryptic Conv error on them.

    Attributes:
        session: the onnxruntime InferenceSession (its other methods are reachable on this object too).
        min_samples: the minimum number of (valid) samples per row.
        input_names, output_names: lists of str.
    """

    def __init__(self, session, min_samples: int):
        self.session = session
        self.min_samples = min_samples
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def __call__(self, input_values, attention_mask=None) -> dict[str, np.ndarray]:
        """input_values: float [batch, samples]; attention_mask: int [batch, samples] (defaults to all
        ones for a model with a mask input). Returns {output name: numpy array}."""
        feeds = {"input_values": input_values}
        if attention_mask is not None or "attention_mask" in self.input_names:
            values = np.asarray(input_values)
            feeds["attention_mask"] = np.ones(values.shape, np.int32) if attention_mask is None else attention_mask
        return dict(zip(self.output_names, self.run(None, feeds)))

    def run(self, output_names, input_feed: dict[str, Any], run_options=None) -> list[np.ndarray]:
        """`InferenceSession.run` with the inputs checked and cast (float32 audio, int32 mask)."""
        return self.session.run(output_names, self._checked(input_feed), run_options)

    def _checked(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        from .export import _check_tflite_audio
        from .modeling.inputs import MASK_VALUES, MIN_SAMPLES_HINT, PCM_HINT

        unknown = sorted(set(feed) - set(self.input_names))
        missing = [name for name in self.input_names if name not in feed]
        if unknown or missing:
            raise ValueError(f"the ONNX model takes inputs {self.input_names}; got unknown {unknown}, "
                             f"missing {missing}")
        values = np.asarray(feed["input_values"])
        if values.dtype in (np.int8, np.uint8, np.int16):
            raise ValueError(f"input_values has dtype {values.dtype.name}, i.e. {PCM_HINT}")
        if values.dtype.kind not in "fiu":
            raise ValueError(f"input_values must be numeric, got dtype {values.dtype}")
        values = values.astype(np.float32, copy=False)
        _check_tflite_audio(values, self.min_samples)  # rows with a mask are no longer than the audio
        if not values.shape[0]:
            raise ValueError("input_values has an empty batch (shape (0, samples))")
        out = {"input_values": values}
        if "attention_mask" not in feed:
            return out
        mask = np.asarray(feed["attention_mask"])
        if mask.shape != values.shape:
            raise ValueError(f"attention_mask has shape {mask.shape}, expected the shape of input_values "
                             f"{values.shape}")
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise ValueError(MASK_VALUES)
        mask = mask.astype(np.int32, copy=False)
        fewest = int(mask.sum(axis=-1).min())
        if fewest < self.min_samples:
            raise ValueError(f"every row of attention_mask needs at least {self.min_samples} valid samples "
                             f"({MIN_SAMPLES_HINT}); got a row with {fewest}")
        out["attention_mask"] = mask
        return out

    def __getattr__(self, name):
        if name == "session":  # not set yet (a half-built object): no recursion
            raise AttributeError(name)
        return getattr(self.session, name)


# ----------------------------------------------------------------------------------------------- helpers
def _submodule(package, name: str):
    # tf2onnx loads its submodules lazily, and only those in its __all__ on attribute access.
    import importlib

    return importlib.import_module(f"{package.__name__}.{name}")


def _check_opset(opset, tf2onnx):
    if opset is None:
        return None
    newest = max(_submodule(tf2onnx, "constants").OPSET_TO_IR_VERSION)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int from {MIN_OPSET} to {newest} (tf2onnx {tf2onnx.__version__}), "
                         f"got {opset!r}")
    return opset


def _forward_function(model, specs):
    import tensorflow as tf

    from .export import _main_output
    from .modeling.inputs import tracing_for_converter
    from .modeling.masking import frame_lengths, sample_lengths

    def forward(input_values, attention_mask=None):
        # Assertions do not convert (tf2onnx drops them): OnnxSession checks inputs in Python instead.
        with tracing_for_converter():
            outputs = model(input_values, attention_mask=attention_mask, training=False)
        name, output = _main_output(outputs)
        result = {name: output}
        if attention_mask is not None and output.shape.rank == 3:
            result["frame_lengths"] = frame_lengths(sample_lengths(input_values, attention_mask), model.config,
                                                    tf.shape(output)[1])
        return result

    return tf.function(forward, input_signature=specs)


# tf2onnx's graph optimiser that rewrites Reshape shapes from its shape inference: where grappler has
# removed an `x + 0` (a zero bias, as in every freshly initialised model), it gives the attention's
# split-heads Reshape the flattened [batch * frames, hidden] input of Dense's Tensordot, and onnxruntime
# fails (`Input shape:{398,32}, requested shape:{398,32,4,8}`). Measured with tf2onnx 1.17.
_BROKEN_OPTIMIZERS = ("reshape_optimizer",)


@contextlib.contextmanager
def _tf2onnx_workarounds(tf2onnx, large: bool):
    """For one conversion: tf2onnx without its broken optimisers, and (large models) `np.product`,
    removed in numpy 2.0 but still called by tf2onnx 1.17's large-model path."""
    optimizer = _submodule(tf2onnx, "optimizer")
    original = getattr(optimizer, "_optimizers", None)
    if isinstance(original, dict):  # the registry tf2onnx reads on every conversion
        optimizer._optimizers = type(original)((k, v) for k, v in original.items() if k not in _BROKEN_OPTIMIZERS)
    lend_product = large and not hasattr(np, "product")
    if lend_product:
        np.product = np.prod
    try:
        yield
    finally:
        if isinstance(original, dict):
            optimizer._optimizers = original
        if lend_product:
            del np.product


_NOT_KEPT = "the export is not kept (a tf2onnx conversion bug: please report it with your tf2onnx version)"


def _verify(model_file, forward, config, attention_mask: bool) -> None:
    """Raises RuntimeError when the ONNX model (bytes or a path) and the traced Keras function disagree
    on one second of random audio, batch 2 (row 1 padded to 60 % when there is a mask)."""
    ort = _require("onnxruntime", "export_onnx(verify=True)")
    samples = max(16000, 4 * int(config.receptive_field))
    x = (0.1 * np.random.default_rng(0).standard_normal((2, samples))).astype(np.float32)
    feeds = {"input_values": x}
    if attention_mask:
        mask = np.ones_like(x, np.int32)
        mask[1, samples * 3 // 5:] = 0
        feeds["attention_mask"] = mask
    expected = {k: v.numpy() for k, v in forward(*feeds.values()).items()}
    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    try:
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    except Exception as error:  # noqa: BLE001 - onnxruntime's error classes derive from Exception only
        raise RuntimeError(f"the converted ONNX model fails in onnxruntime ({str(error).splitlines()[0]}); "
                           f"{_NOT_KEPT}") from None
    for name, value in expected.items():
        if name not in got:
            problem = "is missing"
        elif got[name].shape != value.shape:
            problem = f"has shape {got[name].shape}, Keras {value.shape}"
        elif not np.abs(got[name] - value).max() <= VERIFY_RTOL * max(1.0, float(np.abs(value).max())):
            problem = f"differs from Keras by up to {float(np.abs(got[name] - value).max()):.3g}"
        else:
            continue
        raise RuntimeError(f"the converted ONNX model's {name!r} {problem}; {_NOT_KEPT}")


def _main_output_first(proto) -> None:
    """tf.function returns its dict sorted by key (frame_lengths before logits): put the model's
    output first, so `session.run(None, feed)[0]` is the logits / hidden state."""
    outputs = sorted(proto.graph.output, key=lambda o: o.name == "frame_lengths")
    copies = [type(o)() for o in outputs]
    for copy, original in zip(copies, outputs):
        copy.CopyFrom(original)
    del proto.graph.output[:]
    proto.graph.output.extend(copies)


def _name_dimensions(proto) -> None:
    """Readable symbolic dimensions (tf2onnx writes unk__123): batch, samples, frames."""
    def name(value_info, names):
        for dim, label in zip(value_info.type.tensor_type.shape.dim, names):
            if not dim.HasField("dim_value"):
                dim.dim_param = label

    for value_info in proto.graph.input:
        name(value_info, ("batch", "samples"))
    for value_info in proto.graph.output:  # [batch, frames, channels], [batch, labels] or [batch]
        name(value_info, ("batch", "frames"))


def _write_with_external_data(proto, storage, path: str) -> None:
    """Writes `path` and `path.data`: tf2onnx's external tensors (held in `storage`, each under its own
    name) laid out in one data file with offsets, as onnxruntime reads them."""
    from onnx import TensorProto

    from .files import atomic_files

    data_name = os.path.basename(path) + ".data"
    tensors = [t for t in proto.graph.initializer]
    tensors += [a.t for node in proto.graph.node for a in node.attribute if a.HasField("t")]
    with atomic_files(os.path.dirname(os.path.abspath(path))) as files:
        offset = 0
        with files.open(data_name, "wb") as data:  # staged first: committed before the model
            for tensor in tensors:
                if tensor.data_location != TensorProto.EXTERNAL:
                    continue
                entries = {e.key: e.value for e in tensor.external_data}
                raw = storage.name_to_tensor_data[entries["location"]]
                data.write(b"\0" * (-offset % 64))  # aligned, so the runtime can map tensors in place
                offset += -offset % 64
                data.write(raw)
                del tensor.external_data[:]
                for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                offset += len(raw)
        with files.open(os.path.basename(path), "wb") as f:
            f.write(proto.SerializeToString())
