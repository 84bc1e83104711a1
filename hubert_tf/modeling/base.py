"""`TFHubertPreTrainedModel`: what every HuBERT Keras model shares (config, building, loading and saving,
freezing, the loss hook for `fit()`)."""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import keras
import tensorflow as tf

from ..configuration import HubertConfig
from ._tf_runtime import has_compiled_loss, sublayers
from .inputs import (checked_for_compute_dtype, input_error_message, plain_inputs, to_float_tensor, unpack_inputs,
                     unwrapped_keras_error)
from .labels import label_error_message
from .main_layer import TFHubertMainLayer
from .masking import frame_lengths, sample_lengths
from .outputs import ModelOutput


class TFHubertPreTrainedModel(keras.Model):
    """Base class of the HuBERT models: a `keras.Model` built from a `HubertConfig`.

    Subclasses define `input_names` (the order of list inputs) and `call`. Weights exist right after
    construction, so `from_pretrained`, `save_pretrained` and `model.summary()` work before any call.
    """

    input_names: tuple[str, ...] = ("input_values", "attention_mask")
    # The prefix of the body's weights in the reference checkpoints of this class ("" for HubertModel).
    base_model_prefix = "hubert"
    # The config class this model takes, and the name of its body layer (the reference's module name, so
    # the prefix of the body's weights in head checkpoints). The Python attribute is `self.hubert` for
    # every family: every surface (pipelines, serving, features) reaches the body through it.
    config_class = HubertConfig
    body_name = "hubert"

    def __init__(self, config: HubertConfig | dict | None = None, **kwargs):
        name = kwargs.pop("name", None) or _snake_case(type(self).__name__)
        super().__init__(name=name, **kwargs)
        if config is None:
            config = self.config_class()
        self.config = config if isinstance(config, HubertConfig) else self.config_class.from_dict(config)
        if self.config.model_type != self.config_class.model_type:
            from .wav2vec2 import sibling_class

            other = sibling_class(type(self), self.config.model_type)
            raise ValueError(f"{type(self).__name__} takes a {self.config_class.__name__}, got a "
                             f"{type(self.config).__name__} (model_type {self.config.model_type!r})"
                             + (f"; use {other.__name__}" if other is not None else ""))
        self.hubert = TFHubertMainLayer(self.config, name=self.body_name)
        self.init_head()
        # Keras sublayers take the global dtype policy; `dtype=` given to the model applies to all of them
        # ("mixed_bfloat16", "mixed_float16": float32 variables, half-precision compute).
        for layer in sublayers(self):
            layer.dtype_policy = self.dtype_policy
        from ..runtime import warn_if_emulated  # bfloat16 where the CPU emulates it: slower, say so

        warn_if_emulated(self.dtype_policy.compute_dtype)
        self.build()

    def __call__(self, *args, **kwargs):
        # Keras accepts only plain containers positionally: a processor's BatchFeature (a dict subclass)
        # is passed on as the dict it is.
        if args:
            args = (plain_inputs(args[0]),) + args[1:]
        # Keras casts float inputs to the compute dtype before `call`: float16 audio is checked first.
        args, kwargs = checked_for_compute_dtype(args, kwargs, self.compute_dtype)
        try:
            return super().__call__(*args, **kwargs)
        except (ValueError, TypeError) as error:
            # Our input checks' one-line message, not Keras' 15-line re-wrap with ANSI escapes.
            clean = unwrapped_keras_error(error)
            if clean is None:
                raise
            raise clean from None

    # ------------------------------------------------------------------------- Keras training API
    # BatchFeature inputs (`model.fit(processor(audio, padding=True, return_tensors="np"), y)`): Keras' data
    # adapters refuse dict subclasses, so every entry point hands them on as plain dicts.
    def fit(self, x=None, y=None, *args, **kwargs):
        return super().fit(plain_inputs(x), plain_inputs(y), *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(plain_inputs(x), plain_inputs(y), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(plain_inputs(x), *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        return super().train_on_batch(plain_inputs(x), plain_inputs(y), *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        return super().test_on_batch(plain_inputs(x), plain_inputs(y), *args, **kwargs)

    def predict_on_batch(self, x):
        return super().predict_on_batch(plain_inputs(x))

    def compile(self, optimizer="rmsprop", loss=None, *args, **kwargs):
        """Keras' `compile`. Leave `loss` unset to train on the model's own loss (labels in the inputs
        dict, or as `y`): CTC for `TFHubertForCTC`, cross-entropy for classification, the masked
        prediction loss for pretraining.

        A Keras `loss`:
            - sequence classification: applied to the logits against `y`, as Keras users expect;
              "sparse_categorical_crossentropy", "categorical_crossentropy" and "binary_crossentropy"
              (names or functions) are taken `from_logits=True`, the model's outputs being logits; a
              crossentropy object with `from_logits=False` is a ValueError (it would train on garbage).
            - the bare model (`TFHubertModel`): applied to its outputs (e.g. `{"last_hidden_state": "mse"}`).
            - models that compute their own loss (CTC, pretraining): a ValueError saying so.

        Example:

        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # doctest: +SKIP
        >>> model.fit(processor(audio_list, padding=True, return_tensors="np"), class_ids)  # doctest: +SKIP
        """
        target = self.keras_loss_target
        if loss is not None and target is None:
            raise ValueError(
                f"{type(self).__name__} computes its own loss: call compile() without loss= and pass the "
                "labels in the inputs (a 'labels' key) or as y")
        if loss is not None and target == "logits" and not isinstance(loss, Mapping):
            loss = _from_logits(loss)
        self._hubert_loss_on = target if loss is not None and not isinstance(loss, Mapping) else "outputs"
        return super().compile(optimizer, loss, *args, **kwargs)

    @property
    def keras_loss_target(self) -> str | None:
        """What a `compile(loss=...)` applies to: "logits" (classification heads: the logits against y),
        "outputs" (the bare model's output dict) or None (the model computes its own loss: refused)."""
        if getattr(self, "classifier", None) is not None:
            return "logits"
        if type(self).loss_from_outputs is not TFHubertPreTrainedModel.loss_from_outputs:
            return None
        return "outputs"

    def _keras_y_pred(self, y_pred):
        """The model's outputs as Keras' compiled loss and metrics match them: the logits tensor (a
        classification loss compiled for them), else a plain dict without "loss" (Keras' tree paths do not
        look into dict subclasses)."""
        if not isinstance(y_pred, ModelOutput):
            return y_pred
        if getattr(self, "_hubert_loss_on", None) == "logits" or (
                self.keras_loss_target == "logits" and not has_compiled_loss(self)):
            return y_pred["logits"]
        return dict(y_pred.without("loss"))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras hook: compiled metrics ("accuracy") see the logits of classification heads."""
        return super().compute_metrics(x, y, self._keras_y_pred(y_pred), sample_weight=sample_weight)

    def init_head(self):
        """Creates the layers on top of the body (none for the bare model)."""

    # ------------------------------------------------------------------------- the one forward
    def unpack(self, input_values, **given):
        """The call's inputs as one dict by name (see `unpack_inputs`), labels checked for the head."""
        inputs = unpack_inputs(input_values, self.input_names, given)
        if inputs.get("labels") is not None:
            inputs["labels"] = self.validate_labels(inputs["labels"])
        return inputs

    def body(self, inputs, *, output_attentions=None, output_hidden_states=None, output_layers=None,
             exact_padding=False, training=False, need_hidden_states=False, stop_early=False, **kwargs):
        """Runs the HuBERT body (`self.hubert`, the one forward every model and surface uses) on the
        unpacked `inputs` dict.

        Args:
            need_hidden_states: the head itself needs every hidden state (weighted layer sum).
            stop_early: with `output_layers`, stop after the highest requested layer (bare model).
            kwargs: passed to the main layer (`mask_time_indices`, `output_extract_features`).

        Returns:
            The main layer's BaseModelOutput (with `frame_lengths`).
        """
        return self.hubert(
            inputs["input_values"], attention_mask=inputs.get("attention_mask"),
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states) or need_hidden_states,
            output_layers=None if need_hidden_states else output_layers, stop_early=stop_early,
            exact_padding=bool(exact_padding), training=training, **kwargs,
        )

    @staticmethod
    def finish(output, return_dict):
        """The model's output: a ModelOutput, or its tuple with `return_dict=False`."""
        return output if return_dict is None or return_dict else output.to_tuple()

    def build(self, input_shape=None):
        if self.built:
            return
        self.hubert.build()
        self.build_head()
        self.built = True

    def build_head(self):
        """Builds the layers on top of the body (none for the bare model)."""

    # ------------------------------------------------------------------------- Keras serialisation
    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        return cls(cls.config_class.from_dict(config.pop("config")), **config)

    # ------------------------------------------------------------------------- checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Loads a model from a local directory or a hub repo id, in any Hugging Face checkpoint format.

        Formats, first found wins: `model.safetensors`, `model.safetensors.index.json`, `tf_model.h5`,
        `pytorch_model.bin`, `pytorch_model.bin.index.json` (read without torch, no pickle code run).

        Args:
            pretrained_model_name_or_path: a directory or a hub repo id ("facebook/hubert-large-ls960-ft").
                A path-like name that is not a directory ("./x", "models/x" with a local `models/`) is an
                OSError "no such directory" at once; a hub id fails within about a second, in one line,
                when the hub cannot be reached and the repo is not cached (`HF_HUB_OFFLINE=1` honoured).
            config: a HubertConfig (or a path / hub id of one) instead of the checkpoint's `config.json`.
            revision, cache_dir, force_download, local_files_only, token, subfolder: as in transformers
                (huggingface_hub's download options; `subfolder` also applies to a local directory).
            ignore_mismatched_sizes: re-initialise weights whose shape differs (with a warning) instead of
                raising ValueError.
            output_loading_info: also return transformers' dict of sets `missing_keys`,
                `unexpected_keys`, `mismatched_keys` and the list `error_msgs`.
            dtype: optional Keras dtype policy name for the model, e.g. "bfloat16" or "mixed_bfloat16"
                (`torch_dtype=`, transformers' old name, is taken too; "auto" keeps the global policy).
            use_safetensors: True: load only safetensors files; False: never.
            variant: the weight files' variant, e.g. "fp16" for `model.fp16.safetensors`.
            state_dict: {reference name: array} to load instead of the checkpoint's weights.
            target_lang: for MMS checkpoints, load that language's adapter (see
                `TFWav2Vec2ForCTC.load_adapter`).
            **config_overrides: config fields to change, e.g. `vocab_size=40`, `mask_time_prob=0.0`. Other
                transformers loading options (`from_pt`, `trust_remote_code`, `device_map`, ... see
                `hubert_tf.hub.LOADING_OPTIONS`) are accepted and have no effect; any other keyword is a
                TypeError naming it, with a did-you-mean.

        Returns:
            The model, or `(model, loading_info)` with `output_loading_info=True`.

        A HuBERT class given a wav2vec2 checkpoint (`model_type: "wav2vec2"`) returns its wav2vec2
        sibling (`TFHubertForCTC` -> `TFWav2Vec2ForCTC`), so every surface loading by HuBERT class works.

        Example:

        >>> model = TFHubertForCTC.from_pretrained("facebook/hubert-large-ls960-ft")  # doctest: +SKIP
        >>> model, info = TFHubertForCTC.from_pretrained("my_dir", output_loading_info=True)  # doctest: +SKIP
        >>> sorted(info["missing_keys"])  # doctest: +SKIP
        []
        """
        from ..checkpoints.loading import load_pretrained

        return load_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Uploads `save_pretrained`'s files (config.json, model.safetensors) to a hub repo in one commit.

        Args:
            repo_id: "name" or "org/name" (created if missing).
            **kwargs: `commit_message`, `commit_description`, `private`, `token`, `revision`, `create_pr`,
                `max_shard_size` (see `hubert_tf.push.push_to_hub`).

        Returns:
            huggingface_hub's `CommitInfo`.

        Example:

        >>> model.push_to_hub("me/hubert-tiny-ctc", commit_message="first")  # doctest: +SKIP
        """
        from ..push import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, max_shard_size: int | str = "5GB",
                        safe_serialization: bool = True) -> None:
        """Writes `config.json` and `model.safetensors` (sharded with an index above `max_shard_size`) in the
        reference PyTorch naming and layout, so `transformers.HubertForCTC.from_pretrained(dir)` loads it.

        Args:
            save_directory: created if needed; files are written atomically.
            max_shard_size: int bytes or a string such as "5GB" / "500MB".
            safe_serialization: must be True (only safetensors is written).
        """
        from ..checkpoints.saving import save_pretrained

        save_pretrained(self, save_directory, max_shard_size=max_shard_size, safe_serialization=safe_serialization)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras' `export` with audio defaults: inputs of any batch size and length.

        `format="tf_saved_model"` -> `hubert_tf.export.export_saved_model` (signature `serving_default`:
        `input_values` float32 [batch, samples] + `attention_mask` int32 [batch, samples]; kwargs such as
        `version=1` or `processor=` for the `transcribe` signatures); `format="litert"` (or "tflite") ->
        `hubert_tf.export.to_tflite` (kwarg `quantize`). With an explicit `input_signature`, or another
        format, Keras' own export runs.
        """
        from .. import export as export_lib

        if input_signature is None and format == "tf_saved_model":
            return export_lib.export_saved_model(self, filepath, verbose=bool(verbose), **kwargs)
        if input_signature is None and format in ("litert", "tflite"):
            return export_lib.to_tflite(self, filepath, **kwargs)
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    # ------------------------------------------------------------------------- training helpers
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        """Recomputes each Transformer layer's activations in the backward pass instead of keeping them,
        as transformers' method of the same name: less memory in training for about one more forward
        pass of the layers; the same loss and gradients (dropout masks included). Inference is unchanged.

        Args:
            gradient_checkpointing_kwargs: accepted for transformers compatibility; must be empty.

        Example:

        >>> model.gradient_checkpointing_enable()  # doctest: +SKIP
        >>> model.fit(train, epochs=3)  # doctest: +SKIP
        """
        if gradient_checkpointing_kwargs:
            raise ValueError(f"gradient_checkpointing_kwargs are not supported, got {gradient_checkpointing_kwargs!r}")
        self._set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self):
        """Undoes `gradient_checkpointing_enable()`."""
        self._set_gradient_checkpointing(False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        """True after `gradient_checkpointing_enable()`."""
        return bool(self.hubert.encoder.gradient_checkpointing)

    def _set_gradient_checkpointing(self, enabled: bool):
        self.hubert.encoder.gradient_checkpointing = enabled
        # fit() traces its train step once: the next fit() must trace it again
        self.train_function = None

    def freeze_feature_encoder(self):
        """Makes the conv feature encoder non-trainable (compile again afterwards if already compiled)."""
        self.hubert.feature_extractor.trainable = False

    def freeze_base_model(self):
        """Makes the whole HuBERT body non-trainable; only the head trains (compile again afterwards)."""
        self.hubert.trainable = False

    def loss_from_outputs(self, x, y, y_pred):
        """The loss for `fit()` when labels come separately (`(inputs, labels)` datasets)."""
        raise ValueError(f"{type(self).__name__} computes no loss from labels")

    @property
    def loss_reduction(self) -> str:
        """How the model's loss reduces over the batch: "mean" or "sum" (decides the replica scaling)."""
        return "mean"

    def validate_labels(self, labels):
        """`labels` checked for the head (graph-mode assertion); used by `fit()` under jit_compile."""
        return labels

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: the model's own loss (labels in the inputs dict, or as `y`) unless `compile()` got a
        `loss`, in which case Keras' compiled loss is used.

        Under a `tf.distribute` strategy each replica sees its share of the global batch and the gradients
        are summed: a "mean" loss is divided by the number of replicas, a "sum" loss is not, so the
        gradients and the reported loss equal those of one device on the global batch.
        """
        if has_compiled_loss(self):
            return super().compute_loss(x, y, self._keras_y_pred(y_pred), sample_weight, training=training)
        if y is not None:
            loss = self.loss_from_outputs(x, y, y_pred)
        elif isinstance(y_pred, dict) and "loss" in y_pred:
            loss = y_pred["loss"]
        else:
            raise ValueError(
                "no labels to compute a loss from: give the dataset a 'labels' key (or yield "
                "(inputs, labels) tuples), or compile() with a loss"
            )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1 and self.loss_reduction == "mean":
            loss = loss / replicas
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype) / replicas
        return loss

    def predict_step(self, data):
        """`predict()` returns the outputs without `loss` (a per-batch scalar; use `evaluate()` for it)."""
        outputs = super().predict_step(data)
        if isinstance(outputs, dict) and "loss" in outputs:
            outputs = type(outputs)({k: v for k, v in outputs.items() if k != "loss"})
        return outputs

    # Inside a tf.function a failed label or input check is an InvalidArgumentError; fit/evaluate/predict
    # re-raise it as the ValueError eager code gives.
    def make_train_function(self, force=False):
        if self.optimizer is not None and not self.optimizer.built:
            # Keras would create the optimizer's slots while tracing the first step, which makes
            # tf.function trace that step twice (variables created on the first trace): build them now.
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        super().make_train_function(force=force)
        self.train_function = _reraise_label_errors(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        super().make_test_function(force=force)
        self.test_function = _reraise_label_errors(self.test_function)
        return self.test_function

    def make_predict_function(self, force=False):
        super().make_predict_function(force=force)
        self.predict_function = _reraise_label_errors(self.predict_function)
        return self.predict_function

    def _autoconvert_optionals(self, step_func):
        # Keras' hook between the data iterator and the (possibly XLA-compiled) step. XLA drops
        # assertions, so under jit_compile the labels are checked here, outside the compiled step.
        step = super()._autoconvert_optionals(step_func)
        if not self.jit_compile:
            return step

        @functools.wraps(step)
        def checked_step(data):
            return step(_map_labels(data, self.validate_labels))

        return checked_step

    def frame_lengths(self, inputs):
        """[batch] valid frames of the unpacked `inputs` (from their attention mask), for losses that get
        the model's outputs separately (`fit()` with `(inputs, labels)` batches)."""
        x = to_float_tensor(inputs["input_values"], "input_values")
        return frame_lengths(sample_lengths(x, inputs.get("attention_mask")), self.config)


def _reraise_label_errors(function):
    """Wraps a Keras train/test/predict function: label- and input-check InvalidArgumentErrors ->
    ValueError."""
    if function is None or getattr(function, "_reraises_label_errors", False):
        return function

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            message = label_error_message(error) or input_error_message(error)
            if message is None:
                raise
            raise ValueError(message) from None

    wrapper._reraises_label_errors = True
    return wrapper


def _map_labels(data, fn):
    """Applies `fn` to the labels of one batch as Keras receives it: a dict with "labels", or the `y` of an
    `(x, y[, sample_weight])` tuple. Per-replica values (tf.distribute) are left alone."""
    if isinstance(data, dict) and isinstance(data.get("labels"), tf.Tensor):
        return {**data, "labels": fn(data["labels"])}
    if isinstance(data, tuple) and len(data) in (2, 3):
        x, y = data[0], data[1]
        if isinstance(y, tf.Tensor):
            return (x, fn(y)) + tuple(data[2:])
        if isinstance(x, dict):
            return (_map_labels(x, fn),) + tuple(data[1:])
    return data


_LOGIT_LOSSES = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


def _from_logits(loss):
    """A classification head's compiled loss on logits: crossentropy names / functions -> the loss object
    with `from_logits=True`; a crossentropy object with `from_logits=False` is refused; others as given."""
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", None)
    if name in _LOGIT_LOSSES and (isinstance(loss, str) or loss is getattr(keras.losses, name, None)):
        return _LOGIT_LOSSES[name](from_logits=True)
    if isinstance(loss, tuple(_LOGIT_LOSSES.values())) and not loss.get_config().get("from_logits", True):
        raise ValueError(f"the model outputs logits: use keras.losses.{type(loss).__name__}(from_logits=True) "
                         "(or leave loss unset: the model computes its own cross-entropy)")
    return loss


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
