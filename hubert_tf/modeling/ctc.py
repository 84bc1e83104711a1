"""`TFHubertForCTC`: HuBERT with a linear CTC head, for speech recognition (the reference `HubertForCTC`)."""

from __future__ import annotations

import keras
import tensorflow as tf

from .base import TFHubertPreTrainedModel
from .inputs import unpack_inputs
from .losses import check_labels, ctc_loss
from .outputs import CausalLMOutput

register = keras.saving.register_keras_serializable(package="hubert_tf")


@register
class TFHubertForCTC(TFHubertPreTrainedModel):
    """HuBERT with a linear CTC head (the reference `HubertForCTC`): waveform -> per-frame logits.

    Args:
        config: HubertConfig. `vocab_size`, `final_dropout`, `pad_token_id` (the CTC blank),
            `ctc_loss_reduction` and `ctc_zero_infinity` configure the head and its loss.

    Call args:
        input_values, attention_mask, output_attentions, output_hidden_states, exact_padding,
            return_dict, training: as `TFHubertModel`.
        output_layers: optional int or list of ints: the hidden states to return (the encoder still
            runs every layer, the logits need them).
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
    >>> model = TFHubertForCTC(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
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
             output_hidden_states=None, return_dict=None, training=False, exact_padding=False, output_layers=None):
        inputs = self.unpack(input_values, attention_mask=attention_mask, labels=labels)
        labels = inputs.get("labels")
        outputs = self.body(inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            output_layers=output_layers, exact_padding=exact_padding, training=training)
        hidden = self.dropout(outputs["last_hidden_state"], training=training)
        # float32 logits under mixed precision: the log-softmax and CTC recursion need the range.
        logits = tf.cast(self.lm_head(hidden), tf.float32)  # [batch, frames, vocab]
        loss = None
        if labels is not None:
            loss = self.ctc_loss(logits, labels, outputs["frame_lengths"], inputs)
        return self.finish(CausalLMOutput(loss=loss, logits=logits, hidden_states=outputs.get("hidden_states"),
                                          attentions=outputs.get("attentions")), return_dict)

    def ctc_loss(self, logits, labels, frame_lengths, inputs):
        """CTC loss of `logits` [batch, frames, vocab] against `labels` [batch, label_length]."""
        if labels.shape.rank != 2:
            raise ValueError(f"labels must have shape [batch, label_length], got {tuple(labels.shape)}")
        batch = tf.convert_to_tensor(inputs["input_values"]).shape[0]
        if labels.shape[0] is not None and batch is not None and labels.shape[0] != batch:
            raise ValueError(f"labels have batch size {labels.shape[0]} but input_values has {batch}")
        return ctc_loss(logits, labels, frame_lengths, blank=self.config.pad_token_id,
                        reduction=self.config.ctc_loss_reduction, zero_infinity=self.config.ctc_zero_infinity)

    def loss_from_outputs(self, x, y, y_pred):
        inputs = unpack_inputs(x, self.input_names, {})
        labels = check_labels(y, self.config.vocab_size)
        return self.ctc_loss(y_pred["logits"], labels, self.frame_lengths(inputs), inputs)

    @property
    def loss_reduction(self) -> str:
        return self.config.ctc_loss_reduction

    def validate_labels(self, labels):
        return check_labels(labels, self.config.vocab_size)
