"""`TFHubertForSequenceClassification`: utterance-level classification (keyword spotting, emotion, speaker
id, ...), the reference `HubertForSequenceClassification` (SUPERB-style heads)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .base import TFHubertPreTrainedModel
from .inputs import unpack_inputs
from .losses import IGNORE_INDEX
from .masking import frame_mask_from_sample_mask
from .outputs import SequenceClassifierOutput

register = keras.saving.register_keras_serializable(package="hubert_tf")


def check_ids(labels, num_classes: int, field: str, name: str = "labels"):
    """Integer ids must lie in [0, num_classes) or equal -100 (ignored). ValueError eagerly; in a graph an
    InvalidArgumentError with the same message, which `fit`/`evaluate` re-raise as ValueError.

    Args:
        labels: int array or tensor, any shape.
        num_classes: int. Exclusive upper bound.
        field: str. The config field giving `num_classes` (named in the message).
    """
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise ValueError(f"{name} must be integer ids, got dtype {labels.dtype.name}")
    message = f"{name} must be in [0, {num_classes}) ({field}) or -100 to ignore"
    if tf.executing_eagerly():
        values = labels.numpy()
        bad = values[(values != IGNORE_INDEX) & ((values < 0) | (values >= num_classes))]
        if bad.size:
            raise ValueError(f"{message}; got {sorted(set(bad.tolist()))[:10]}")
        return labels
    valid = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < num_classes))
    bad = tf.boolean_mask(labels, tf.logical_not(valid))
    with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(valid), [message + "; got", bad], summarize=10)]):
        return tf.identity(labels)


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
             output_hidden_states=None, return_dict=None, training=False):
        inputs = unpack_inputs(input_values, self.input_names, {"attention_mask": attention_mask, "labels": labels})
        labels = inputs.get("labels")
        if labels is not None:
            labels = check_class_labels(labels, self.config.num_labels)
        attention_mask = inputs.get("attention_mask")
        weighted = self.config.use_weighted_layer_sum
        outputs = self.hubert(
            inputs["input_values"], attention_mask=attention_mask, output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states) or weighted, training=training,
        )
        if weighted:
            stacked = tf.stack(outputs["hidden_states"], axis=1)  # [batch, layers, frames, hidden]
            norm_weights = tf.nn.softmax(tf.cast(self.layer_weights, tf.float32))  # softmax in float32
            norm_weights = tf.cast(norm_weights, stacked.dtype)
            hidden = tf.reduce_sum(stacked * norm_weights[None, :, None, None], axis=1)  # [batch, frames, hidden]
        else:
            hidden = outputs["last_hidden_state"]
        hidden = self.projector(hidden)  # [batch, frames, proj]
        pooled = self.pool(hidden, attention_mask)  # [batch, proj]
        # float32 logits under mixed precision, as the other heads.
        logits = tf.cast(self.classifier(pooled), tf.float32)  # [batch, num_labels]
        loss = classification_loss(logits, labels) if labels is not None else None
        output = SequenceClassifierOutput(
            loss=loss, logits=logits,
            hidden_states=outputs.get("hidden_states") if output_hidden_states else None,
            attentions=outputs.get("attentions"),
        )
        return output if return_dict is None or return_dict else output.to_tuple()

    def pool(self, hidden, attention_mask):
        """Mean over frames: the valid frames (from the sample-level attention mask) or all of them."""
        if attention_mask is None:
            return tf.reduce_mean(hidden, axis=1)
        c = self.config
        frame_mask = frame_mask_from_sample_mask(attention_mask, tf.shape(hidden)[1], c.conv_kernel, c.conv_stride)
        weights = tf.cast(frame_mask, hidden.dtype)[:, :, None]  # [batch, frames, 1]
        return tf.reduce_sum(hidden * weights, axis=1) / tf.reduce_sum(weights, axis=1)

    def loss_from_outputs(self, x, y, y_pred):
        return classification_loss(y_pred["logits"], check_class_labels(y, self.config.num_labels))

    def validate_labels(self, labels):
        return check_class_labels(labels, self.config.num_labels)

    def predict_labels(self, logits) -> list[str]:
        """The `id2label` names of the argmax of `logits` [batch, num_labels]."""
        return [self.config.id2label[int(i)] for i in np.argmax(np.asarray(logits), axis=-1)]
