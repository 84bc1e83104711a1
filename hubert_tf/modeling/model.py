"""`TFHubertModel`: the bare HuBERT model, waveform -> hidden states (the reference `HubertModel`)."""

from __future__ import annotations

import keras

from .base import TFHubertPreTrainedModel
from .inputs import unpack_inputs

register = keras.saving.register_keras_serializable(package="hubert_tf")


@register
class TFHubertModel(TFHubertPreTrainedModel):
    """The bare HuBERT model: waveform -> hidden states (the reference `HubertModel`).

    Args:
        config: HubertConfig. Architecture; `from_pretrained` loads weights as well.

    Call args:
        input_values: float [batch, samples] (or a list `[input_values, attention_mask]`, or a dict).
        attention_mask: optional int [batch, samples], 1 = real sample, 0 = padding.
        mask_time_indices: optional bool [batch, frames], frames replaced by the learned mask embedding.
        output_attentions, output_hidden_states: bool.
        output_layers: optional int or list of ints: return only these hidden states (0 = encoder input,
            num_hidden_layers = last; negative from the end) and stop the encoder after the highest one,
            so `last_hidden_state` is that layer's (for features: no work and no memory for layers
            nobody asked for).
        exact_padding: bool. With an attention mask, every row of a padded batch gives exactly what it
            gives alone, group-norm (base) models included (statistics over the valid samples only).
            Defaults to False, the reference's numbers.
        return_dict: bool. False gives a tuple.
        training: bool.

    Returns:
        BaseModelOutput: `last_hidden_state` [batch, frames, hidden_size]; `hidden_states`
        (num_hidden_layers + 1 tensors, the last equal to `last_hidden_state`, or those of
        `output_layers`); `attentions`.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4)
    >>> model = TFHubertModel(config)
    >>> model(np.zeros((2, 16000), "float32")).last_hidden_state.shape
    TensorShape([2, 49, 32])
    >>> [h.shape[1] for h in model(np.zeros((1, 8000), "float32"), output_layers=[1]).hidden_states]
    [24]
    """

    input_names = ("input_values", "attention_mask", "mask_time_indices")
    base_model_prefix = ""

    def call(self, input_values=None, attention_mask=None, mask_time_indices=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False, exact_padding=False, output_layers=None):
        inputs = unpack_inputs(input_values, self.input_names,
                               {"attention_mask": attention_mask, "mask_time_indices": mask_time_indices})
        outputs = self.body(inputs, mask_time_indices=inputs.get("mask_time_indices"),
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            output_layers=output_layers, stop_early=True, exact_padding=exact_padding,
                            training=training)
        return self.finish(outputs.without("frame_lengths"), return_dict)
