"""`TFHubertForSequenceClassification`: utterance-level classification (keyword spotting, emotion, speaker
id, ...), the reference `HubertForSequenceClassification` (SUPERB-style heads)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .base import TFHubertPreTrainedModel
from .main_layer import resolve_layers
from .labels import IGNORE_INDEX, check_ids
from .masking import lengths_to_mask, masked_mean
from .outputs import SequenceClassifierOutput

register = keras.saving.register_keras_serializable(package="hubert_tf")


def check_class_labels(labels, num_labels: int):
    """Class labels: [batch] (or [batch, 1]) ints in [0, num_labels), or -100 (example ignored)."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape.rank is not None and labels.shape.rank != 1:
        raise ValueError(f"labels must have shape [batch] (one class id per example), got {tuple(labels.shape)}")
    return check_ids(labels, num_labels, "num_labels")


def classification_loss(logits, labels):
    """Mean cross-entropy over the examples whose label is not -100 (torch's `CrossEntropyLoss()`).

    Args:
        logits: [batch, num_labels], any float dtype (computed in float32).
        labels: int [batch].

    Returns:
        Scalar float32 (NaN when every label is -100, as the reference).
    """
    labels = tf.cast(labels, tf.int32)
    keep = labels != IGNORE_INDEX
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(keep, labels, 0), logits=tf.cast(logits, tf.float32)
    )  # [batch]
    weights = tf.cast(keep, tf.float32)
    return tf.reduce_sum(per_example * weights) / tf.reduce_sum(weights)


@register
class TFHubertForSequenceClassification(TFHubertPreTrainedModel):
    """HuBERT with an utterance classification head (the reference `HubertForSequenceClassification`).

    hidden states -> (optional softmax-weighted sum over all layers) -> `projector` Dense ->
    mean over the valid frames -> `classifier` Dense -> logits.

    Args:
        config: HubertConfig. The head reads `num_labels` / `id2label` / `label2id` (number and names of
            classes), `classifier_proj_size` (width of `projector`) and `use_weighted_layer_sum` (mix the
            `num_hidden_layers + 1` hidden states with learned softmax-normalised `layer_weights`,
            initialised uniform, instead of using the last one; hidden states in the transformers 4.x
            convention, the last being `last_hidden_state`).

    Call args:
        input_values: float [batch, samples] (or a list `[input_values, attention_mask, labels]`, or a dict).
        attention_mask: optional int [batch, samples], 1 = real sample, 0 = padding. With it the pooling
            averages the valid frames only; without it, all frames.
        labels: optional int [batch] class ids (-100 = ignore the example); gives `loss`, the mean
            cross-entropy.
        output_attentions, output_hidden_states, return_dict, training: as `TFHubertModel`.

    Returns:
        SequenceClassifierOutput: `logits` [batch, num_labels], `loss` (scalar) when labels are given,
        `hidden_states` / `attentions` when asked.

    Training: `fit()` takes `{"input_values", "attention_mask", "labels"}` dicts or
    `(inputs, labels)` pairs; `freeze_feature_encoder()` / `freeze_base_model()` before `compile()`.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertForSequenceClassification
    >>> config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4,
    ...     num_labels=3, classifier_proj_size=16, use_weighted_layer_sum=True)
    >>> model = TFHubertForSequenceClassification(config)
    >>> out = model(np.zeros((2, 16000), "float32"), labels=np.array([0, 2]))
    >>> out.logits.shape, out.loss.shape
    (TensorShape([2, 3]), TensorShape([]))
    """

    input_names = ("input_values", "attention_mask", "labels")

    def init_head(self):
        c = self.config
        self.num_layers = c.num_hidden_layers + 1  # the encoder input and every layer's output
        self.projector = keras.layers.Dense(c.classifier_proj_size, name="projector")
        self.classifier = keras.layers.Dense(c.num_labels, name="classifier")

    def build_head(self):
        c = self.config
        if c.use_weighted_layer_sum:
            self.layer_weights = self.add_weight(
                name="layer_weights", shape=(self.num_layers,),
                initializer=keras.initializers.Constant(1.0 / self.num_layers),
            )
        self.projector.build((None, None, c.hidden_size))
        self.classifier.build((None, c.classifier_proj_size))

    def call(self, input_values=None, attention_mask=None, labels=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False, exact_padding=False, output_layers=None):
        inputs = self.unpack(input_values, attention_mask=attention_mask, labels=labels)
        labels = inputs.get("labels")
        weighted = self.config.use_weighted_layer_sum
        outputs = self.body(inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            output_layers=output_layers, need_hidden_states=weighted, exact_padding=exact_padding,
                            training=training)
        hidden_states = outputs.get("hidden_states")
        if weighted:
            stacked = tf.stack(hidden_states, axis=1)  # [batch, layers, frames, hidden]
            norm_weights = tf.nn.softmax(tf.cast(self.layer_weights, tf.float32))  # softmax in float32
            norm_weights = tf.cast(norm_weights, stacked.dtype)
            hidden = tf.reduce_sum(stacked * norm_weights[None, :, None, None], axis=1)  # [batch, frames, hidden]
            if output_layers is not None:
                hidden_states = tuple(hidden_states[i] for i in resolve_layers(output_layers, self.config.num_hidden_layers))
            elif not output_hidden_states:
                hidden_states = None
        else:
            hidden = outputs["last_hidden_state"]
        hidden = self.projector(hidden)  # [batch, frames, proj]
        frame_mask = None
        if inputs.get("attention_mask") is not None:
            frame_mask = lengths_to_mask(outputs["frame_lengths"], tf.shape(hidden)[1])
        pooled = masked_mean(hidden, frame_mask)  # [batch, proj]: the valid frames, or all of them
        # float32 logits under mixed precision, as the other heads.
        logits = tf.cast(self.classifier(pooled), tf.float32)  # [batch, num_labels]
        loss = classification_loss(logits, labels) if labels is not None else None
        return self.finish(SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states,
                                                    attentions=outputs.get("attentions")), return_dict)

    def loss_from_outputs(self, x, y, y_pred):
        return classification_loss(y_pred["logits"], check_class_labels(y, self.config.num_labels))

    def validate_labels(self, labels):
        return check_class_labels(labels, self.config.num_labels)

    def predict_labels(self, logits) -> list[str]:
        """The `id2label` names of the argmax of `logits` [batch, num_labels]."""
        return [self.config.id2label[int(i)] for i in np.argmax(np.asarray(logits), axis=-1)]
