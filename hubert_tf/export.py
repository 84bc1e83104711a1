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

import os
import shutil
import tempfile
import warnings
from typing import Any

import keras
import tensorflow as tf

from .checkpoints.formats.atomic import atomic_write
from .serving import GreedyCTCDecoder, normalize_audio

SERVE_ENDPOINT = "serve"  # also written as "serving_default", the signature TF Serving uses by default
TRANSCRIBE = "transcribe"
TRANSCRIBE_PADDED = "transcribe_padded"
FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "dynamic")

_AUDIO = tf.TensorSpec([None, None], tf.float32, name="audio")
_INPUT_VALUES = tf.TensorSpec([None, None], tf.float32, name="input_values")
_ATTENTION_MASK = tf.TensorSpec([None, None], tf.int32, name="attention_mask")


def export_saved_model(model, path: str | os.PathLike, *, version: int | None = None, processor=None,
                       skip_special_tokens: bool = False, overwrite: bool = False, verbose: bool = False) -> str:
    """Writes `model` as a SavedModel whose signatures accept audio of any length and batch size.

    The directory is written next to its final place and renamed into it when complete, so a TF Serving
    watching `path` never loads a half-written version.

    Args:
        model: a HuBERT Keras model (`TFHubertModel`, `TFHubertForCTC`, `TFHubertForSequenceClassification`).
        path: str or PathLike. The SavedModel directory, or with `version` the model's base directory
            (TF Serving's `--model_base_path`).
        version: int. Write into `path/<version>/`, the `MODEL_NAME/VERSION/` layout of TF Serving.
            Defaults to None (write into `path` itself).
        processor: a `HubertProcessor` or a directory / hub id holding its files. Adds the `transcribe`
            and `transcribe_padded` signatures: raw audio -> normalisation (as the processor's feature
            extractor, statistics over the valid samples) -> model -> greedy CTC decoding (as the
            processor's tokenizer). `TFHubertForCTC` only. Defaults to None.
        skip_special_tokens: bool. The tokenizer's `decode(skip_special_tokens=...)` for the text
            signatures. Defaults to False (transformers' CTC pipeline setting: with True the tokenizer
            drops the blank before merging repeats, which merges doubled letters).
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
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVE_ENDPOINT, _serve_function(model))
    if processor is not None:
        for name, function in _transcribe_functions(model, processor, skip_special_tokens).items():
            archive.add_endpoint(name, function)
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        archive.write_out(staging, verbose=verbose)
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
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    names = []

    @tf.function(input_signature=[_INPUT_VALUES])
    def forward(input_values):
        name, output = _main_output(model(input_values, training=False))
        names.append(name)
        return output

    # Weights become constants: the converter's resource-variable path leaves them uninitialised
    # (NaN outputs) in TF 2.21, and constants are what dynamic-range quantisation works on.
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
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
        flatbuffer = converter.convert()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:  # no half-written .tflite under the final name
        f.write(flatbuffer)
    return path


def tflite_interpreter(model_path: str | os.PathLike | None = None, *, model_content: bytes | None = None,
                       num_threads: int | None = None):
    """A TFLite interpreter for a model from `to_tflite`: LiteRT's (`ai_edge_litert`) when installed,
    else `tf.lite.Interpreter` (deprecated in favour of LiteRT but still in TF 2.21).

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite's notice pointing to ai_edge_litert
        return Interpreter(model_path=path, model_content=model_content, num_threads=num_threads)


def export_model(model, path: str | os.PathLike, format: str = "saved_model", **kwargs: Any) -> str:
    """Exports `model` in `format` ("saved_model" -> `export_saved_model`, "tflite" -> `to_tflite`);
    `kwargs` go to that function. Returns the path written."""
    if format == "saved_model":
        return export_saved_model(model, path, **kwargs)
    if format == "tflite":
        return to_tflite(model, path, **kwargs)
    raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


# ----------------------------------------------------------------------------------------------- helpers
def _main_output(outputs):
    """(name, float32 tensor) of the output to serve: "logits" for models with a head, else
    "last_hidden_state" (the bare model)."""
    name = "logits" if "logits" in outputs else "last_hidden_state"
    return name, tf.cast(outputs[name], tf.float32)


def _check_inputs(model, input_values, attention_mask=None):
    """In-graph checks that give serving clients a readable error instead of a conv shape error."""
    checks = [tf.debugging.assert_greater_equal(
        tf.shape(input_values)[1], model.config.receptive_field,
        message=f"audio needs at least {model.config.receptive_field} samples (the conv receptive field)",
    )]
    if attention_mask is not None:
        checks.append(tf.debugging.assert_equal(
            tf.shape(attention_mask), tf.shape(input_values),
            message="attention_mask must have the shape of the audio [batch, samples]",
        ))
    return checks


def _serve_function(model):
    @tf.function(input_signature=[_INPUT_VALUES, _ATTENTION_MASK])
    def serve(input_values, attention_mask):
        with tf.control_dependencies(_check_inputs(model, input_values, attention_mask)):
            outputs = model(input_values, attention_mask=attention_mask, training=False)
        name, output = _main_output(outputs)
        return {name: output}

    return serve


def _transcribe_functions(model, processor, skip_special_tokens):
    if isinstance(processor, (str, os.PathLike)):
        from .processing import HubertProcessor

        processor = HubertProcessor.from_pretrained(os.fspath(processor))
    if not hasattr(model, "lm_head"):
        raise ValueError(f"processor= (audio-to-text signatures) needs a CTC model, got {type(model).__name__}")
    extractor = processor.feature_extractor
    decoder = GreedyCTCDecoder(processor.tokenizer, model.config.vocab_size, skip_special_tokens)

    def transcribe_graph(audio, attention_mask):
        with tf.control_dependencies(_check_inputs(model, audio, attention_mask)):
            input_values = normalize_audio(audio, attention_mask, do_normalize=extractor.do_normalize,
                                           padding_value=extractor.padding_value)
        # As the Python path: the model sees the mask only when the feature extractor returns one
        # (hubert-base-style checkpoints are run without it).
        model_mask = attention_mask if extractor.return_attention_mask else None
        logits = model(input_values, attention_mask=model_mask, training=False)["logits"]
        sample_lengths = model.sample_lengths(audio, attention_mask)
        frame_lengths = tf.clip_by_value(model.hubert.frame_lengths(sample_lengths), 0, tf.shape(logits)[1])
        text, token_ids = decoder(tf.cast(logits, tf.float32), frame_lengths)
        return {"text": text, "token_ids": token_ids, "frame_lengths": frame_lengths}

    @tf.function(input_signature=[_AUDIO])
    def transcribe(audio):
        return transcribe_graph(audio, None)

    @tf.function(input_signature=[_AUDIO, _ATTENTION_MASK])
    def transcribe_padded(audio, attention_mask):
        return transcribe_graph(audio, attention_mask)

    return {TRANSCRIBE: transcribe, TRANSCRIBE_PADDED: transcribe_padded}


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


def _move_into_place(staging, target):
    """Renames the finished SavedModel into `target` (an old SavedModel there is replaced)."""
    old = None
    if os.path.isdir(target):
        if os.listdir(target):
            parent = os.path.dirname(os.path.abspath(target))
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=parent)
            os.rmdir(old)
            os.rename(target, old)
        else:
            os.rmdir(target)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
