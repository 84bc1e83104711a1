"""`TFHubertMainLayer`: feature encoder -> feature projection -> SpecAugment -> Transformer encoder."""

from __future__ import annotations

import keras
import tensorflow as tf

from ..configuration import HubertConfig
from .encoder import TFHubertEncoder, TFHubertEncoderStableLayerNorm
from .feature_encoder import TFHubertFeatureEncoder, TFHubertFeatureProjection
from .inputs import check_attention_mask, check_audio, to_float_tensor, unpack_inputs
from .masking import compute_span_mask, conv_output_lengths, frame_mask_from_sample_mask
from .outputs import BaseModelOutput

register = keras.saving.register_keras_serializable(package="hubert_tf")

MAIN_INPUTS = ("input_values", "attention_mask", "mask_time_indices")


@register
class TFHubertMainLayer(keras.layers.Layer):
    """The HuBERT body, the reference `HubertModel` as one Keras layer.

    Args:
        config: HubertConfig (or its dict).

    Call args:
        input_values: float [batch, samples] waveform (16 kHz, normalised as the feature extractor
            does); or a list `[input_values, attention_mask]`, or a dict with those keys.
        attention_mask: optional int [batch, samples], 1 on real samples and 0 on padding.
        mask_time_indices: optional bool [batch, frames]: frames replaced by `masked_spec_embed`.
        output_attentions, output_hidden_states: bool.
        training: bool. Enables dropout, layerdrop and SpecAugment.
        exact_padding: bool. With an attention_mask, take the group-norm statistics of "group" models over
            the valid samples only, so every example of a padded batch gives exactly what it gives alone
            (the reference lets the padding into those statistics; False keeps its numbers).

    Returns:
        BaseModelOutput with `last_hidden_state` [batch, frames, hidden], and `hidden_states`
        (num_hidden_layers + 1 tensors) / `attentions` when asked.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig
    >>> layer = TFHubertMainLayer(HubertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
    ...     intermediate_size=128, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> layer(np.zeros((1, 16000), "float32"))["last_hidden_state"].shape
    TensorShape([1, 49, 64])
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, HubertConfig) else HubertConfig.from_dict(config)
        c = self.config
        self.feature_extractor = TFHubertFeatureEncoder(
            c.conv_dim, c.conv_kernel, c.conv_stride, c.conv_bias, c.feat_extract_norm,
            c.feat_extract_activation, name="feature_extractor",
        )
        self.feature_projection = TFHubertFeatureProjection(
            c.conv_dim[-1], c.hidden_size, c.feat_proj_layer_norm, c.layer_norm_eps, c.feat_proj_dropout,
            name="feature_projection",
        )
        encoder_cls = TFHubertEncoderStableLayerNorm if c.do_stable_layer_norm else TFHubertEncoder
        self.encoder = encoder_cls(c, name="encoder")

    @property
    def has_masked_spec_embed(self) -> bool:
        return self.config.mask_time_prob > 0.0 or self.config.mask_feature_prob > 0.0

    def build(self, input_shape=None):
        self.feature_extractor.build()
        self.feature_projection.build()
        if self.has_masked_spec_embed:
            self.masked_spec_embed = self.add_weight(
                name="masked_spec_embed", shape=(self.config.hidden_size,),
                initializer=keras.initializers.RandomUniform(0.0, 1.0),
            )
        self.encoder.build()

    def frame_lengths(self, sample_lengths):
        """Output frames for `sample_lengths` audio samples (ints or int tensor)."""
        return conv_output_lengths(sample_lengths, self.config.conv_kernel, self.config.conv_stride)

    def _spec_augment(self, hidden_states, frame_mask, mask_time_indices, training):
        """SpecAugment: time spans -> `masked_spec_embed`, feature spans -> 0 (training only, random
        every step); an explicit `mask_time_indices` is applied in any mode."""
        c = self.config
        if not c.apply_spec_augment:
            return hidden_states
        shape = tf.shape(hidden_states)
        batch, frames = shape[0], shape[1]
        if mask_time_indices is None and training and c.mask_time_prob > 0:
            lengths = None if frame_mask is None else tf.reduce_sum(tf.cast(frame_mask, tf.int32), axis=-1)
            mask_time_indices = compute_span_mask(
                batch, frames, c.mask_time_prob, c.mask_time_length, c.mask_time_min_masks, lengths
            )
        if mask_time_indices is not None:
            if not self.has_masked_spec_embed:
                raise ValueError("mask_time_indices needs masked_spec_embed, which exists only when "
                                 "config.mask_time_prob > 0 or config.mask_feature_prob > 0")
            embed = tf.cast(self.masked_spec_embed, hidden_states.dtype)
            mask = tf.cast(mask_time_indices, tf.bool)[:, :, None]
            hidden_states = tf.where(mask, embed[None, None, :], hidden_states)
        if training and c.mask_feature_prob > 0:
            feature_mask = compute_span_mask(
                batch, c.hidden_size, c.mask_feature_prob, c.mask_feature_length, c.mask_feature_min_masks
            )  # [batch, hidden]
            hidden_states = tf.where(feature_mask[:, None, :], tf.zeros_like(hidden_states), hidden_states)
        return hidden_states

    def call(self, input_values=None, attention_mask=None, mask_time_indices=None, output_attentions=False,
             output_hidden_states=False, training=False, exact_padding=False, **kwargs):
        if kwargs:
            raise ValueError(f"unknown input name(s) {sorted(kwargs)}; accepted: {list(MAIN_INPUTS)}")
        inputs = unpack_inputs(
            input_values, MAIN_INPUTS, {"attention_mask": attention_mask, "mask_time_indices": mask_time_indices}
        )
        x = to_float_tensor(inputs["input_values"], "input_values")
        check_audio(x, self.config.receptive_field)
        attention_mask = inputs.get("attention_mask")
        c = self.config

        sample_lengths = None
        if attention_mask is not None:
            attention_mask = tf.convert_to_tensor(attention_mask)
            check_attention_mask(attention_mask, x)
            if exact_padding:
                sample_lengths = tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=-1)
        # [batch, frames, conv_dim[-1]]
        features = self.feature_extractor(tf.cast(x, self.compute_dtype), sample_lengths=sample_lengths)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = frame_mask_from_sample_mask(
                attention_mask, tf.shape(features)[1], c.conv_kernel, c.conv_stride
            )
        hidden_states = self.feature_projection(features, training=training)  # [batch, frames, hidden]
        hidden_states = self._spec_augment(hidden_states, frame_mask, inputs.get("mask_time_indices"), training)
        last, hidden, attentions = self.encoder(
            hidden_states, frame_mask=frame_mask, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, training=training,
        )
        return BaseModelOutput(last_hidden_state=last, hidden_states=hidden, attentions=attentions)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}
