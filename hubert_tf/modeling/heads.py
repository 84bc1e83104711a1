"""The public models: `TFHubertModel` (hidden states) and `TFHubertForCTC` (speech recognition)."""

from __future__ import annotations

import keras
import tensorflow as tf

from .base import TFHubertPreTrainedModel
from .inputs import to_float_tensor, unpack_inputs
from .losses import check_labels, ctc_loss
from .outputs import CausalLMOutput

register = keras.saving.register_keras_serializable(package="hubert_tf")


def _finish(output, return_dict):
    return output if return_dict is None or return_dict else output.to_tuple()


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
        return_dict: bool. False gives a tuple.
        training: bool.

    Returns:
        BaseModelOutput: `last_hidden_state` [batch, frames, hidden_size]; `hidden_states`
        (num_hidden_layers + 1 tensors; the last equals `last_hidden_state`); `attentions`.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertModel
    >>> config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4)
    >>> model = TFHubertModel(config)
    >>> model(np.zeros((2, 16000), "float32")).last_hidden_state.shape
    TensorShape([2, 49, 32])
    """

    input_names = ("input_values", "attention_mask", "mask_time_indices")
    base_model_prefix = ""

    def call(self, input_values=None, attention_mask=None, mask_time_indices=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        inputs = unpack_inputs(input_values, self.input_names,
                               {"attention_mask": attention_mask, "mask_time_indices": mask_time_indices})
        outputs = self.hubert(
            inputs["input_values"], attention_mask=inputs.get("attention_mask"),
            mask_time_indices=inputs.get("mask_time_indices"), output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states), training=training,
        )
        return _finish(outputs, return_dict)


@register
class TFHubertForCTC(TFHubertPreTrainedModel):
    """HuBERT with a linear CTC head (the reference `HubertForCTC`): waveform -> per-frame logits.

    Args:
        config: HubertConfig. `vocab_size`, `final_dropout`, `pad_token_id` (the CTC blank),
            `ctc_loss_reduction` and `ctc_zero_infinity` configure the head and its loss.

    Call args:
        input_values, attention_mask, output_attentions, output_hidden_states, return_dict, training:
            as `TFHubertModel`.
        labels: optional int [batch, label_length], padded with -100; gives `loss`.

    Returns:
        CausalLMOutput: `logits` [batch, frames, vocab_size] (float32 under every dtype policy), `loss`
        (scalar float32) when labels are given, `hidden_states` / `attentions` when asked.

    Fine-tuning: `model.compile(optimizer=...)` without a loss, then `fit()` on batches that are dicts
    with a "labels" key or `(inputs, labels)` tuples (see `hubert_tf.data.make_dataset`). Labels needing
    more frames than their audio gives have an infinite loss unless `ctc_zero_infinity` (eager calls warn;
    inside `fit()` the warning comes from `make_dataset(..., config=model.config)`).

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertForCTC
    >>> config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4)
    >>> model = TFHubertForCTC(config)
    >>> out = model(np.zeros((1, 16000), "float32"), labels=np.array([[5, 6, 7]]))
    >>> out.logits.shape, out.loss.shape
    (TensorShape([1, 49, 32]), TensorShape([]))
    """

    input_names = ("input_values", "attention_mask", "labels")

    def init_head(self):
        self.dropout = keras.layers.Dropout(self.config.final_dropout)
        self.lm_head = keras.layers.Dense(self.config.vocab_size, name="lm_head")

    def build_head(self):
        self.lm_head.build((None, None, self.config.hidden_size))

    def call(self, input_values=None, attention_mask=None, labels=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        inputs = unpack_inputs(input_values, self.input_names, {"attention_mask": attention_mask, "labels": labels})
        labels = inputs.get("labels")
        if labels is not None:
            labels = check_labels(labels, self.config.vocab_size)
        outputs = self.hubert(
            inputs["input_values"], attention_mask=inputs.get("attention_mask"),
            output_attentions=bool(output_attentions), output_hidden_states=bool(output_hidden_states),
            training=training,
        )
        hidden = self.dropout(outputs["last_hidden_state"], training=training)
        # float32 logits under mixed precision: the log-softmax and CTC recursion need the range.
        logits = tf.cast(self.lm_head(hidden), tf.float32)  # [batch, frames, vocab]
        loss = None
        if labels is not None:
            loss = self.ctc_loss(inputs, logits, labels)
        return _finish(CausalLMOutput(loss=loss, logits=logits, hidden_states=outputs.get("hidden_states"),
                                      attentions=outputs.get("attentions")), return_dict)

    def ctc_loss(self, inputs, logits, labels):
        """CTC loss of `logits` against `labels`, frames counted from the inputs' attention mask."""
        x = to_float_tensor(inputs["input_values"], "input_values")
        if labels.shape.rank != 2:
            raise ValueError(f"labels must have shape [batch, label_length], got {tuple(labels.shape)}")
        if labels.shape[0] is not None and x.shape[0] is not None and labels.shape[0] != x.shape[0]:
            raise ValueError(f"labels have batch size {labels.shape[0]} but input_values has {x.shape[0]}")
        lengths = self.hubert.frame_lengths(self.sample_lengths(x, inputs.get("attention_mask")))
        return ctc_loss(logits, labels, lengths, blank=self.config.pad_token_id,
                        reduction=self.config.ctc_loss_reduction, zero_infinity=self.config.ctc_zero_infinity)

    def loss_from_outputs(self, x, y, y_pred):
        inputs = unpack_inputs(x, self.input_names, {})
        return self.ctc_loss(inputs, y_pred["logits"], check_labels(y, self.config.vocab_size))

    @property
    def loss_reduction(self) -> str:
        return self.config.ctc_loss_reduction

    def validate_labels(self, labels):
        return check_labels(labels, self.config.vocab_size)
