"""Deployment: a SavedModel for TF Serving that takes audio of any length (optionally with an audio-to-text
signature), and TFLite / LiteRT models with a resizable input length.

SavedModel signatures (every shape dynamic, `-1` in `saved_model_cli show --all`):

    serving_default (= serve): input_values float32 [batch, samples] (normalised, as the feature extractor
        gives), attention_mask int32 [batch, samples] (1 = real sample, 0 = padding)
        -> logits float32 [batch, frames, vocab_size] (CTC) or [batch, num_labels] (classification),
           or last_hidden_state float32 [batch, frames, hidden_size] (bare model).
    transcribe (with `processor=`): audio float32 [batch, samples] (raw audio, every sample valid)
        -> text string [batch], token_ids int32 [batch, frames], frame_lengths int32 [batch].
    transcribe_padded (with `processor=`): audio float32 [batch, samples], attention_mask int32
        [batch, samples] -> as `transcribe`.

The SavedModel holds only standard TF ops: `tf.saved_model.load` and TF Serving need no hubert_tf.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import shutil
import sys
import tempfile
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .files import atomic_write
from .modeling._tf_runtime import add_tflite_metadata, freeze_concrete_function, read_tflite_metadata
from .modeling.inputs import tracing_for_converter
from .serving.signatures import INPUT_VALUES as _INPUT_VALUES
from .serving.signatures import Signatures
from .serving.warmup import warmup_requests, write_warmup_file

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = (None, "dynamic")
TFLITE_METADATA = "hubert_tf"  # flatbuffer metadata entry: JSON with the minimum input length



def export_saved_model(model, path: str | os.PathLike, *, version: int | None = None, processor=None,
                       skip_special_tokens: bool = False, output_layers=None, top_k: int = 5, signatures=None,
                       warmup: bool = False,
                       warmup_model_name: str | None = None, overwrite: bool = False, verbose: bool = False) -> str:
    """Writes `model` as a SavedModel whose signatures accept audio of any length and batch size.

    The directory is written next to its final place and renamed into it when complete, so a TF Serving
    watching `path` never loads a half-written version.

    Args:
        model: a HuBERT Keras model (`TFHubertModel`, `TFHubertForCTC`, `TFHubertForSequenceClassification`).
        path: str or PathLike. The SavedModel directory, or with `version` the model's base directory
            (TF Serving's `--model_base_path`).
        version: int. Write into `path/<version>/`, the `MODEL_NAME/VERSION/` layout of TF Serving.
            Defaults to None (write into `path` itself).
        processor: a `HubertProcessor` or a directory / hub id holding its files. Adds the `transcribe`,
            `transcribe_padded` and `transcribe_lengths` signatures: raw audio -> normalisation (as the
            processor's feature extractor, statistics over the valid samples) -> model -> greedy CTC
            decoding (as the processor's tokenizer). `TFHubertForCTC` only. Its feature extractor's
            settings also apply to the other raw-audio signatures. Defaults to None.
        skip_special_tokens: bool. The tokenizer's `decode(skip_special_tokens=...)` for the text
            signatures. Defaults to False (transformers' CTC pipeline setting: with True the tokenizer
            drops the blank before merging repeats, which merges doubled letters).
        output_layers: optional list of ints: hidden states that `forward_lengths` and `embed` also return
            (`hidden_state_<layer>` [batch, frames, hidden]). Defaults to None.
        top_k: int. Labels per row of the `classify` signature (classification models). Defaults to 5.
        signatures: optional list of signature names to write (e.g. ["transcribe_lengths"]); defaults to
            every one the model and processor support. `serving_default` is always written.
        warmup: bool. Write `assets.extra/tf_serving_warmup_requests` (TF Serving replays them at load,
            so the first real requests pay no graph initialisation). Needs `hubert_tf[serving]`.
            Defaults to False.
        warmup_model_name: str. The model name in the warm-up requests (TF Serving ignores it).
        overwrite: bool. Replace an existing SavedModel at the target. Defaults to False (FileExistsError).
        verbose: bool. Print the signatures. Defaults to False.

    Returns:
        str, the directory written (`path/<version>` with a version).

    Raises:
        FileExistsError: the target exists and is not empty (and `overwrite` is False, or it holds
            something other than a SavedModel).
        ValueError: `processor` with a model that has no CTC head, or a bad `version`.

    Example:

    >>> import tempfile, numpy as np, tensorflow as tf
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> model = TFHubertModel(HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> out = export_saved_model(model, tempfile.mkdtemp() + "/hubert", version=1)
    >>> serve = tf.saved_model.load(out).signatures["serving_default"]
    >>> x = np.zeros((1, 24000), "float32")
    >>> serve(input_values=x, attention_mask=np.ones_like(x, "int32"))["last_hidden_state"].shape
    TensorShape([1, 74, 32])
    """
    target = _target_dir(path, version)
    _check_target(target, overwrite)
    if isinstance(processor, (str, os.PathLike)):
        from .processing import HubertProcessor

        processor = HubertProcessor.from_pretrained(os.fspath(processor))
    signatures = Signatures(model, processor, skip_special_tokens=skip_special_tokens, output_layers=output_layers,
                            top_k=top_k).all(signatures)
    warmup_records = None
    if warmup:
        warmup_records = warmup_requests(signatures, model.config.receptive_field, model_name=warmup_model_name)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function in signatures.items():
        archive.add_endpoint(name, function)
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    _remove_stale_staging(parent, os.path.basename(target))
    staging = tempfile.mkdtemp(prefix=_staging_prefix(os.path.basename(target)), dir=parent)
    try:
        archive.write_out(staging, verbose=verbose)
        if warmup_records is not None:
            write_warmup_file(staging, warmup_records)
        _make_readable(staging)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def to_tflite(model, path: str | os.PathLike, *, quantize: str | None = None) -> str:
    """Converts `model` to a TFLite / LiteRT flatbuffer with resizable batch and length.

    The model takes `input_values` float32 [batch, samples] (normalised audio, every sample valid: no
    attention mask, so run padded batches one utterance at a time) and returns `logits` or
    `last_hidden_state` like the SavedModel. Built-in TFLite ops only (no SELECT_TF_OPS / Flex).
    Resize with `interpreter.resize_tensor_input(index, [1, samples])` + `allocate_tensors()`, or call
    the "serving_default" signature runner, which resizes itself.

    Args:
        model: a HuBERT Keras model.
        path: str or PathLike. The `.tflite` file to write (parent directories are created).
        quantize: None (float32) or "dynamic" (dynamic-range quantisation: int8 weights, float
            activations; about 4x smaller for full-size models). Defaults to None.

    Returns:
        str, the path written.

    Example:

    >>> import tempfile, numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> model = TFHubertModel(HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> path = to_tflite(model, tempfile.mkdtemp() + "/hubert.tflite")
    >>> runner = tflite_interpreter(path).get_signature_runner()
    >>> runner(input_values=np.zeros((1, 24000), "float32"))["last_hidden_state"].shape
    (1, 74, 32)
    """
    flatbuffer = tflite_flatbuffer(model, quantize=quantize)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:  # no half-written .tflite under the final name
        f.write(flatbuffer)
    return path


def tflite_flatbuffer(model, *, quantize: str | None = None) -> bytes:
    """The TFLite flatbuffer that `to_tflite` writes, as bytes (for an in-memory interpreter).

    Args:
        model: a HuBERT Keras model.
        quantize: None (float32) or "dynamic" (int8 weights of every matmul and conv, float activations).

    Returns:
        bytes: the flatbuffer, with the minimum input length in its "hubert_tf" metadata entry.

    Example:

    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> model = TFHubertModel(HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> runner = tflite_interpreter(model_content=tflite_flatbuffer(model, quantize="dynamic")).get_signature_runner()
    >>> list(runner.get_input_details()), list(runner.get_output_details())
    (['input_values'], ['last_hidden_state'])
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    flatbuffer = add_tflite_metadata(_convert_to_tflite(model, quantize), TFLITE_METADATA, json.dumps(
        {"min_samples": int(model.config.receptive_field), "input": "input_values"}).encode())
    _release_freed_memory()  # after the converter's and the metadata step's objects are gone
    return flatbuffer


def _convert_to_tflite(model, quantize):
    # No attention mask input: the model's masked graph needs a StridedSlice form TFLite's built-in ops
    # lack (Flex only); `hubert_tf.quantization` runs padded rows one at a time instead.
    names = []

    @tf.function(input_signature=[_INPUT_VALUES])
    def forward(input_values):
        # TFLite's built-in ops have no assertions: `tflite_interpreter` checks inputs before invoke().
        with tracing_for_converter():
            name, output = _main_output(model(input_values, training=False))
        names.append(name)
        return output

    # Weights become constants: the converter's resource-variable path leaves them uninitialised
    # (NaN outputs) in TF 2.21, and constants are what dynamic-range quantisation works on.
    frozen = freeze_concrete_function(forward.get_concrete_function())
    output_name = names[-1]

    @tf.function(input_signature=[_INPUT_VALUES])
    def serving_default(input_values):
        return {output_name: frozen(input_values)[0]}  # named output for the signature runner

    # Through a SavedModel, the converter path that keeps the signature (named inputs and outputs).
    with tempfile.TemporaryDirectory() as saved_model:
        tf.saved_model.save(tf.Module(), saved_model, signatures={"serving_default": serving_default})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def _release_freed_memory() -> None:
    """Hands the heap the TFLite converter freed back to the OS (glibc `malloc_trim`; a no-op elsewhere).
    glibc keeps it otherwise: the process stays at the converter's peak (many GB for the base model).
    The traced functions and frozen graphs sit in reference cycles: collected first."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def tflite_interpreter(model_path: str | os.PathLike | None = None, *, model_content: bytes | None = None,
                       num_threads: int | None = None):
    """A TFLite interpreter for a model from `to_tflite`: LiteRT's (`ai_edge_litert`) when installed,
    else `tf.lite.Interpreter` (deprecated in favour of LiteRT but still in TF 2.21).

    Inputs are checked in Python before the interpreter runs (audio shorter than the conv receptive
    field, non-finite samples, wrong rank): the interpreter itself would read out of bounds on them.

    Args:
        model_path: str or PathLike. A `.tflite` file.
        model_content: bytes. The flatbuffer itself, instead of `model_path`.
        num_threads: int. CPU threads. Defaults to the runtime's choice.
    """
    path = None if model_path is None else os.fspath(model_path)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    if model_content is None:
        with open(path, "rb") as f:
            model_content = f.read()
    info = read_tflite_metadata(model_content, TFLITE_METADATA)
    min_samples = int(json.loads(info)["min_samples"]) if info else 1
    checked = _checked_interpreter_class(Interpreter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite's notice pointing to ai_edge_litert
        interpreter = checked(model_content=model_content, num_threads=num_threads)
    interpreter.min_samples = min_samples
    return interpreter


def _check_tflite_audio(values, min_samples):
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"input_values must have shape [batch, samples], got {values.shape}")
    if values.shape[1] < min_samples:
        raise ValueError(f"input_values has {values.shape[1]} samples, fewer than the minimum of {min_samples} "
                         "(audio shorter than the receptive field of the conv feature encoder)")
    if not np.isfinite(values).all():
        raise ValueError("input_values contains NaN or infinite value(s)")


def _checked_interpreter_class(base):
    class CheckedInterpreter(base):
        """The TFLite interpreter with HuBERT's input checks before every run."""

        min_samples = 1

        def invoke(self):
            for detail in self.get_input_details():
                _check_tflite_audio(self.get_tensor(detail["index"]), self.min_samples)
            return super().invoke()

        def get_signature_runner(self, signature_key=None):
            runner = super().get_signature_runner(signature_key)
            call, min_samples = runner.__call__, self.min_samples

            class CheckedRunner(type(runner)):
                def __call__(self, **kwargs):
                    for value in kwargs.values():
                        _check_tflite_audio(value, min_samples)
                    return call(**kwargs)

            runner.__class__ = CheckedRunner
            return runner

    return CheckedInterpreter


def export_model(model, path: str | os.PathLike, format: str = "saved_model", **kwargs: Any) -> str:
    """Exports `model` in `format` ("saved_model" -> `export_saved_model`, "tflite" -> `to_tflite`,
    "onnx" -> `hubert_tf.onnx.export_onnx`, needs `hubert_tf[onnx]`); `kwargs` go to that function.
    Returns the path written."""
    if format == "saved_model":
        return export_saved_model(model, path, **kwargs)
    if format == "tflite":
        return to_tflite(model, path, **kwargs)
    if format == "onnx":
        from .onnx import export_onnx

        return export_onnx(model, path, **kwargs)
    raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


# ----------------------------------------------------------------------------------------------- helpers
def _main_output(outputs):
    """(name, float32 tensor) of the output to serve: "logits" for models with a head, else
    "last_hidden_state" (the bare model)."""
    name = "logits" if "logits" in outputs else "last_hidden_state"
    return name, tf.cast(outputs[name], tf.float32)


def _target_dir(path, version) -> str:
    path = os.fspath(path)
    if version is None:
        return path
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative int (TF Serving's version directory), got {version!r}")
    return os.path.join(path, str(version))


def _is_saved_model(directory) -> bool:
    return any(os.path.exists(os.path.join(directory, name)) for name in ("saved_model.pb", "saved_model.pbtxt"))


def _check_target(target, overwrite):
    if os.path.isfile(target):
        raise FileExistsError(f"{target} is a file, expected a directory for the SavedModel")
    if os.path.isdir(target) and os.listdir(target):
        if not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace a SavedModel")
        if not _is_saved_model(target):
            raise FileExistsError(f"{target} is not empty and holds no SavedModel; not replacing it")


def _staging_prefix(name: str) -> str:
    # The writer's pid in the name: a later export removes the leftovers of killed ones, never a live one's.
    return f".{name}.tmp-{os.getpid()}-"


def _remove_stale_staging(parent: str, name: str) -> None:
    """Removes staging directories that exports killed mid-way left next to `name`."""
    prefix = f".{name}.tmp-"
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours, or no permission to ask: leave it alone
        return True
    return True


def _make_readable(directory: str) -> None:
    """Directories 0777 and files 0666 less the umask (mkdtemp makes 0700), so a server running as
    another user can read the export."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps two directory entries (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _move_into_place(staging, target):
    """Puts the finished SavedModel at `target`. An old SavedModel there is swapped out in one atomic
    step where the OS allows (a crash never leaves the version missing), else with two renames."""
    if os.path.isdir(target) and os.listdir(target) and _exchange(staging, target):
        return  # `staging` now holds the old export, removed by the caller
    old = None
    if os.path.isdir(target):
        if os.listdir(target):
            parent = os.path.dirname(os.path.abspath(target))
            old = tempfile.mkdtemp(prefix=_staging_prefix(os.path.basename(target)) + "old-", dir=parent)
            os.rmdir(old)
            os.rename(target, old)
        else:
            os.rmdir(target)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
