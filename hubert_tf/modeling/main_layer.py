"""`TFHubertMainLayer`: feature encoder -> feature projection -> SpecAugment -> Transformer encoder."""

from __future__ import annotations

import keras
import tensorflow as tf

from ..configuration import HubertConfig, config_from_dict
from .encoder import TFHubertEncoder, TFHubertEncoderStableLayerNorm
from .feature_encoder import TFHubertFeatureEncoder, TFHubertFeatureProjection
from .inputs import check_attention_mask, check_audio, checked_for_compute_dtype, to_float_tensor, unpack_inputs
from .masking import compute_span_mask, conv_output_lengths, frame_lengths, lengths_to_mask, sample_lengths
from .outputs import BaseModelOutput

register = keras.saving.register_keras_serializable(package="hubert_tf")


def scale_gradient(x, multiplier: float):
    """Identity forward; the gradient flowing back through `x` is multiplied by `multiplier` (fairseq's
    `GradMultiply`; 0 stops it)."""
    if multiplier == 1.0:
        return x
    if multiplier == 0.0:
        return tf.stop_gradient(x)
    return x * multiplier + tf.stop_gradient(x) * (1.0 - multiplier)

MAIN_INPUTS = ("input_values", "attention_mask", "mask_time_indices")


def resolve_layers(output_layers, num_hidden_layers: int):
    """`output_layers` (an int or a sequence of ints, negative counting from the end) -> a sorted tuple
    of distinct hidden-state indices in [0, num_hidden_layers], or None."""
    if output_layers is None:
        return None
    layers = [output_layers] if isinstance(output_layers, int) else list(output_layers)
    n = num_hidden_layers + 1
    out = set()
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise ValueError(f"output_layers: layer {layer!r} is out of range, the model has hidden states "
                             f"0..{n - 1} (num_hidden_layers={num_hidden_layers}; negative counts from the end)")
        out.add(layer % n)
    if not out:
        raise ValueError("output_layers is empty: name at least one layer, or pass None")
    return tuple(sorted(out))


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
        output_layers: optional int or sequence of ints, the hidden states to return (indices into the
            full `hidden_states`: 0 = encoder input, num_hidden_layers = last; negative from the end).
            Only those are kept, in increasing order.
        stop_early: bool. With `output_layers`, run no Transformer layer past the highest one requested
            (`last_hidden_state` is then that layer's hidden state). For feature extraction.
        output_extract_features: bool. Also return the conv features (`extract_features`, after the
            `feature_grad_mult` gradient scaling), as transformers' wav2vec2 models do.

    Returns:
        BaseModelOutput with `last_hidden_state` [batch, frames, hidden], `frame_lengths` [batch] (valid
        frames of every row, from the attention mask), and `hidden_states` (num_hidden_layers + 1
        tensors, or those of `output_layers`) / `attentions` / `extract_features` when asked.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig
    >>> layer = TFHubertMainLayer(HubertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
    ...     intermediate_size=128, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> layer(np.zeros((1, 16000), "float32"))["last_hidden_state"].shape
    TensorShape([1, 49, 64])
    """

    def __init__(self, config, feature_grad_mult: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, HubertConfig) else config_from_dict(config)
        if getattr(self.config, "add_adapter", False):
            raise ValueError("add_adapter=True (wav2vec2's strided conv adapter after the encoder, used by "
                             "speech-to-text encoders) is not supported; only add_adapter=false configs load")
        # Scales the gradient reaching the conv feature encoder (fairseq's `feature_grad_mult`; the
        # pretraining model sets it, 1.0 elsewhere).
        self.feature_grad_mult = float(feature_grad_mult)
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

    def __call__(self, *args, **kwargs):
        # Keras casts float inputs to the compute dtype before `call`: float16 audio is checked first.
        args, kwargs = checked_for_compute_dtype(args, kwargs, self.compute_dtype)
        return super().__call__(*args, **kwargs)

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
        """Output frames for `sample_lengths` audio samples (ints, numpy or int tensor; <= 0 when shorter
        than the receptive field)."""
        return conv_output_lengths(sample_lengths, self.config.conv_kernel, self.config.conv_stride)

    def num_frames(self, num_samples):
        """Frames of the (padded) batch for `num_samples` samples per row (a scalar tensor or int)."""
        return self.frame_lengths(num_samples)

    def _spec_augment(self, hidden_states, frame_lengths, mask_time_indices, training):
        """SpecAugment: time spans -> `masked_spec_embed`, feature spans -> 0 (training only, random
        every step); an explicit `mask_time_indices` is applied in any mode."""
        c = self.config
        if not c.apply_spec_augment:
            return hidden_states
        shape = tf.shape(hidden_states)
        batch, frames = shape[0], shape[1]
        if mask_time_indices is None and training and c.mask_time_prob > 0:
            mask_time_indices = compute_span_mask(
                batch, frames, c.mask_time_prob, c.mask_time_length, c.mask_time_min_masks, frame_lengths
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
             output_hidden_states=False, training=False, exact_padding=False, output_layers=None,
             stop_early=False, output_extract_features=False, **kwargs):
        if kwargs:
            raise ValueError(f"unknown input name(s) {sorted(kwargs)}; accepted: {list(MAIN_INPUTS)}")
        inputs = unpack_inputs(
            input_values, MAIN_INPUTS, {"attention_mask": attention_mask, "mask_time_indices": mask_time_indices}
        )
        x = to_float_tensor(inputs["input_values"], "input_values")
        x = check_audio(x, self.config.receptive_field)
        attention_mask = inputs.get("attention_mask")
        layers = resolve_layers(output_layers, self.config.num_hidden_layers)

        # Lengths, once: sample lengths -> frame lengths -> frame mask, passed down to every block.
        lengths = None
        if attention_mask is not None:
            attention_mask = check_attention_mask(tf.convert_to_tensor(attention_mask), x, self.config.receptive_field)
            lengths = sample_lengths(x, attention_mask)  # [batch]
        features = self.feature_extractor(  # [batch, frames, conv_dim[-1]]
            tf.cast(x, self.compute_dtype), sample_lengths=lengths if exact_padding else None)
        features = scale_gradient(features, self.feature_grad_mult)
        frames = tf.shape(features)[1]
        if lengths is None:
            valid, frame_mask = tf.fill([tf.shape(features)[0]], frames), None
        else:
            valid = frame_lengths(lengths, self.config, frames)  # [batch]
            frame_mask = lengths_to_mask(valid, frames)  # [batch, frames]
        hidden_states = self.feature_projection(features, training=training)  # [batch, frames, hidden]
        hidden_states = self._spec_augment(hidden_states, valid, inputs.get("mask_time_indices"), training)
        last, hidden, attentions = self.encoder(
            hidden_states, frame_mask=frame_mask, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, output_layers=layers,
            stop_early=bool(stop_early and layers), training=training,
        )
        return BaseModelOutput(last_hidden_state=last, extract_features=features if output_extract_features else None,
                               hidden_states=hidden, attentions=attentions, frame_lengths=valid)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "feature_grad_mult": self.feature_grad_mult}
