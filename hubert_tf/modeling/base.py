"""`TFHubertPreTrainedModel`: what every HuBERT Keras model shares (config, building, loading and saving,
freezing, the loss hook for `fit()`)."""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf

from ..configuration import HubertConfig
from .main_layer import TFHubertMainLayer


class TFHubertPreTrainedModel(keras.Model):
    """Base class of the HuBERT models: a `keras.Model` built from a `HubertConfig`.

    Subclasses define `input_names` (the order of list inputs) and `call`. Weights exist right after
    construction, so `from_pretrained`, `save_pretrained` and `model.summary()` work before any call.
    """

    input_names: tuple[str, ...] = ("input_values", "attention_mask")
    # The prefix of the body's weights in the reference checkpoints of this class ("" for HubertModel).
    base_model_prefix = "hubert"

    def __init__(self, config: HubertConfig | dict | None = None, **kwargs):
        name = kwargs.pop("name", None) or _snake_case(type(self).__name__)
        super().__init__(name=name, **kwargs)
        if config is None:
            config = HubertConfig()
        self.config = config if isinstance(config, HubertConfig) else HubertConfig.from_dict(config)
        self.hubert = TFHubertMainLayer(self.config, name="hubert")
        self.init_head()
        self.build()

    def init_head(self):
        """Creates the layers on top of the body (none for the bare model)."""

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
        return cls(HubertConfig.from_dict(config.pop("config")), **config)

    # ------------------------------------------------------------------------- checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, config: HubertConfig | None = None,
                        revision: str | None = None, cache_dir: str | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, ignore_mismatched_sizes: bool = False,
                        dtype: str | None = None, **config_overrides):
        """Loads a model from a local directory or a hub repo id, in any Hugging Face checkpoint format.

        Formats, first found wins: `model.safetensors`, `model.safetensors.index.json`, `tf_model.h5`,
        `pytorch_model.bin`, `pytorch_model.bin.index.json` (read without torch, no pickle code run).

        Args:
            pretrained_model_name_or_path: a directory or a hub repo id ("facebook/hubert-large-ls960-ft").
            config: a HubertConfig to use instead of the checkpoint's `config.json`.
            revision, cache_dir, local_files_only, token: hub options (huggingface_hub; HF_HUB_OFFLINE=1
                is honoured).
            ignore_mismatched_sizes: re-initialise weights whose shape differs (with a warning) instead of
                raising ValueError.
            dtype: optional Keras dtype policy name for the model, e.g. "bfloat16" or "mixed_bfloat16".
            **config_overrides: config fields to change, e.g. `vocab_size=40`, `mask_time_prob=0.0`.

        Example:

        >>> model = TFHubertForCTC.from_pretrained("facebook/hubert-large-ls960-ft")  # doctest: +SKIP
        """
        from ..checkpoints.loading import load_pretrained

        return load_pretrained(
            cls, pretrained_model_name_or_path, config=config, revision=revision, cache_dir=cache_dir,
            local_files_only=local_files_only, token=token, ignore_mismatched_sizes=ignore_mismatched_sizes,
            dtype=dtype, **config_overrides,
        )

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

    # ------------------------------------------------------------------------- training helpers
    def freeze_feature_encoder(self):
        """Makes the conv feature encoder non-trainable (compile again afterwards if already compiled)."""
        self.hubert.feature_extractor.trainable = False

    def freeze_base_model(self):
        """Makes the whole HuBERT body non-trainable; only the head trains (compile again afterwards)."""
        self.hubert.trainable = False

    def loss_from_outputs(self, x, y, y_pred):
        """The loss for `fit()` when labels come separately (`(inputs, labels)` datasets)."""
        raise ValueError(f"{type(self).__name__} computes no loss from labels")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: the model's own loss (labels in the inputs dict, or as `y`) unless `compile()` got a
        `loss`, in which case Keras' compiled loss is used."""
        if getattr(self, "_compile_loss", None) is not None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if y is not None:
            loss = self.loss_from_outputs(x, y, y_pred)
        elif isinstance(y_pred, dict) and "loss" in y_pred:
            loss = y_pred["loss"]
        else:
            raise ValueError(
                "no labels to compute a loss from: give the dataset a 'labels' key (or yield "
                "(inputs, labels) tuples), or compile() with a loss"
            )
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        return loss

    def sample_lengths(self, input_values, attention_mask):
        """[batch] valid samples per row: the attention mask's sum, or the padded length."""
        if attention_mask is not None:
            return tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=-1)
        shape = tf.shape(input_values)
        return tf.fill([shape[0]], shape[1])


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
