"""`TFHubertForPreTraining`: HuBERT's self-supervised objective, masked prediction of k-means units.

The objective of the paper as the original fairseq implementation computes it (`HubertModel` and the
`hubert` criterion): spans of frames of the projected conv features are replaced by a learned mask
embedding, the Transformer encodes the sequence, a projection `final_proj` maps every frame to
`final_dim`, and its cosine similarity with a learned embedding per cluster (`label_embs_concat`),
divided by a temperature, scores each cluster.
The loss is the cross-entropy of the frames' cluster ids over the masked frames (weight
`pred_masked_weight`) plus the unmasked ones (`pred_nomask_weight`), averaged over the frames counted,
plus `feature_pen_weight` times the mean square of the conv features.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ._tf_runtime import has_compiled_loss
from .base import TFHubertPreTrainedModel
from .inputs import check_audio, to_float_tensor, unpack_inputs
from .labels import IGNORE_INDEX, check_ids

from .masking import compute_span_mask, frame_lengths, sample_lengths
from .outputs import ModelOutput, _register

register = keras.saving.register_keras_serializable(package="hubert_tf")

# Pretraining settings: read from the config when present (any HubertConfig keeps extra keys), else these
# defaults, those of fairseq's HuBERT base pretraining recipe (`hubert_base_librispeech.yaml`).
PRETRAINING_DEFAULTS: dict[str, Any] = {
    "num_clusters": 100,  # k-means clusters of the targets (100 for MFCC units, 500 for HuBERT units)
    "final_dim": 256,  # width of `final_proj` and of the cluster embeddings
    "logit_temp": 0.1,  # cosine similarities are divided by this
    "pred_masked_weight": 1.0,  # weight of the cross-entropy over masked frames
    "pred_nomask_weight": 0.0,  # weight of the cross-entropy over unmasked frames
    "feature_pen_weight": 10.0,  # weight of the feature penalty (fairseq `loss_weights: [10]`)
    "feature_grad_mult": 0.1,  # scales the gradient reaching the conv feature encoder
    "pretrain_mask_prob": 0.8,  # span masking of the pretraining task (fairseq `mask_prob`)
    "pretrain_mask_length": 10,  # fairseq `mask_length`
    "label_rate": None,  # Hz of the labels; None = the model's frame rate (50 Hz for HuBERT)
}
# fairseq's `apply_mask` uses at least this many spans per utterance.
PRETRAIN_MIN_MASKS = 2
SAMPLING_RATE = 16000


def pretraining_setting(config, name: str):
    """`config.<name>` if set, else `PRETRAINING_DEFAULTS[name]`."""
    value = getattr(config, name, None)
    return PRETRAINING_DEFAULTS[name] if value is None else value


class HubertPreTrainingOutput(ModelOutput):
    """`loss` (scalar, when labels are given); `logits` [batch, frames, num_clusters] (cosine similarity /
    logit_temp of every frame with every cluster); `mask_time_indices` [batch, frames] bool (the masked
    frames); `features_pen` (scalar feature penalty, unweighted); `hidden_states`; `attentions`."""

    fields = ("loss", "logits", "mask_time_indices", "features_pen", "hidden_states", "attentions")


_register(HubertPreTrainingOutput)


def align_labels(labels, num_frames, label_rate: float, frame_rate: float):
    """Labels at `label_rate` Hz -> one label per model frame: frame t takes label floor(t * ratio), ratio =
    label_rate / frame_rate (every other label for 100 Hz labels and 50 Hz frames, as fairseq's
    `forward_targets`). Frames past the labels get -100 (ignored).

    Args:
        labels: int [batch, label_frames], padded with -100.
        num_frames: int or scalar tensor.
    Returns:
        int32 [batch, num_frames].
    """
    labels = tf.cast(labels, tf.int32)
    ratio = float(label_rate) / float(frame_rate)
    if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
        index = tf.range(num_frames) * int(round(ratio))
    else:
        index = tf.cast(tf.floor(tf.cast(tf.range(num_frames), tf.float64) * ratio), tf.int32)
    available = index < tf.shape(labels)[1]
    gathered = tf.gather(labels, tf.minimum(index, tf.shape(labels)[1] - 1), axis=1)  # [batch, frames]
    return tf.where(available[None, :], gathered, IGNORE_INDEX)


def _global_sample_size(sample_size):
    """max(sample_size, 1) on one device. In a replica context of a strategy with several replicas: the
    global batch's sample size divided by the replica count, so that `compute_loss` (which divides a
    "mean" loss by the replicas) and the sum over replicas give sum(loss terms) / global sample size."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    context = tf.distribute.get_replica_context()
    if replicas == 1 or context is None:
        return tf.maximum(sample_size, 1.0)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, sample_size)
    return tf.maximum(total, 1.0) / replicas


def masked_prediction_terms(logits, labels, mask_time_indices, frame_lengths):
    """Per-frame cross-entropy and correctness over the masked and the unmasked labelled valid frames.

    Args:
        logits: [batch, frames, num_clusters].
        labels: int [batch, frames], -100 = no label.
        mask_time_indices: bool [batch, frames].
        frame_lengths: int [batch] valid frames.
    Returns:
        dict of float32 scalars `sum_masked` / `sum_unmasked` (summed cross-entropy), `count_masked` /
        `count_unmasked` (frames), `correct_masked` / `correct_unmasked` (argmax == label), and of
        [batch, frames] float32 `correct`, `masked`, `unmasked` (0/1 per frame).
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    valid = tf.sequence_mask(frame_lengths, tf.shape(logits)[1]) & (labels != IGNORE_INDEX)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(valid, labels, 0), logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)
    masked = tf.cast(valid & mask_time_indices, tf.float32)
    unmasked = tf.cast(valid & ~mask_time_indices, tf.float32)
    return {
        "sum_masked": tf.reduce_sum(ce * masked), "count_masked": tf.reduce_sum(masked),
        "correct_masked": tf.reduce_sum(correct * masked),
        "sum_unmasked": tf.reduce_sum(ce * unmasked), "count_unmasked": tf.reduce_sum(unmasked),
        "correct_unmasked": tf.reduce_sum(correct * unmasked),
        "correct": correct, "masked": masked, "unmasked": unmasked,
    }


@register
class TFHubertForPreTraining(TFHubertPreTrainedModel):
    """HuBERT pretraining: masked prediction of frame-level cluster ids (k-means units).

    waveform -> conv features (gradient x `feature_grad_mult`; penalty mean(features^2)) -> feature
    projection -> spans of frames replaced by `masked_spec_embed` -> Transformer -> `final_proj` ->
    cosine similarity with `label_embs_concat` / `logit_temp` -> cross-entropy with the cluster ids.

    Args:
        config: HubertConfig. Besides the architecture, these fields (kept as extra config keys, written
            to config.json by `save_pretrained`) set the task; absent ones take fairseq's HuBERT base
            values (`PRETRAINING_DEFAULTS`):
            num_clusters: int. Number of k-means clusters of the labels. Defaults to 100.
            final_dim: int. Projection width. Defaults to 256.
            logit_temp: float. Temperature of the cosine similarities. Defaults to 0.1.
            pred_masked_weight, pred_nomask_weight: float. Loss weights of masked / unmasked frames.
                Default to 1.0 and 0.0.
            feature_pen_weight: float. Weight of the conv-feature penalty. Defaults to 10.0.
            feature_grad_mult: float. Gradient scale into the conv feature encoder. Defaults to 0.1.
            pretrain_mask_prob, pretrain_mask_length: float, int. Span masking of the task (at least 2
                spans per utterance). Default to 0.8 and 10.
            label_rate: float. Rate of the labels in Hz; None means one label per model frame (50 Hz).
                100 Hz labels (MFCC frames) with `label_rate=100` are downsampled to every other one.
        `mask_time_prob` (SpecAugment) must be > 0 so that the model has `masked_spec_embed`; the
        pretraining masking uses the `pretrain_mask_*` fields, not `mask_time_*`.

    Call args:
        input_values: float [batch, samples] (or a list `[input_values, attention_mask, labels,
            mask_time_indices]`, or a dict).
        attention_mask: optional int [batch, samples], 1 = real sample.
        labels: optional int [batch, label_frames] cluster ids at `label_rate`, -100 = padding;
            gives `loss`.
        mask_time_indices: optional bool [batch, frames], the frames to mask. By default a new random
            mask is drawn at every call, in training and in inference (the task needs it); pass
            all-False to see the unmasked input.
        output_attentions, output_hidden_states, return_dict, training: as `TFHubertModel`.

    Returns:
        HubertPreTrainingOutput.

    Training: `fit()` on `{"input_values", "attention_mask", "labels"}` dicts or `(inputs, labels)`
    pairs reports `loss`, `acc_masked` and `acc_unmasked` (frame accuracy of the cluster ids).
    Differences from fairseq: frames without a label are ignored rather than cut from the input, and the
    frame padding mask comes from the conv length formula (`attention_mask`), as everywhere here.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import HubertConfig, TFHubertForPreTraining
    >>> config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4,
    ...     num_clusters=10, final_dim=16)
    >>> model = TFHubertForPreTraining(config)
    >>> out = model(np.zeros((2, 16000), "float32"), labels=np.zeros((2, 49), "int32"))
    >>> out.logits.shape, out.loss.shape
    (TensorShape([2, 49, 10]), TensorShape([]))
    """

    input_names = ("input_values", "attention_mask", "labels", "mask_time_indices")
    # Config keys this head reads besides the config class's fields: `from_pretrained` takes them as overrides.
    extra_config_keys = tuple(PRETRAINING_DEFAULTS)

    def init_head(self):
        c = self.config
        if not self.hubert.has_masked_spec_embed:
            raise ValueError("TFHubertForPreTraining masks frames with masked_spec_embed, which exists only when "
                             "config.mask_time_prob > 0 or config.mask_feature_prob > 0; set mask_time_prob > 0")
        if not c.apply_spec_augment:
            raise ValueError("TFHubertForPreTraining masks frames through the body's SpecAugment step: "
                             "config.apply_spec_augment must be True")
        self.num_clusters = int(pretraining_setting(c, "num_clusters"))
        self.final_dim = int(pretraining_setting(c, "final_dim"))
        self.logit_temp = float(pretraining_setting(c, "logit_temp"))
        self.pred_masked_weight = float(pretraining_setting(c, "pred_masked_weight"))
        self.pred_nomask_weight = float(pretraining_setting(c, "pred_nomask_weight"))
        self.feature_pen_weight = float(pretraining_setting(c, "feature_pen_weight"))
        self.feature_grad_mult = float(pretraining_setting(c, "feature_grad_mult"))
        self.hubert.feature_grad_mult = self.feature_grad_mult  # the body scales its conv features' gradient
        self.mask_prob = float(pretraining_setting(c, "pretrain_mask_prob"))
        self.mask_length = int(pretraining_setting(c, "pretrain_mask_length"))
        self.frame_rate = SAMPLING_RATE / c.inputs_to_logits_ratio
        self.label_rate = float(pretraining_setting(c, "label_rate") or self.frame_rate)
        if self.num_clusters < 1 or self.final_dim < 1 or self.logit_temp <= 0 or self.mask_length < 1:
            raise ValueError(f"invalid pretraining settings: num_clusters={self.num_clusters}, final_dim="
                             f"{self.final_dim}, logit_temp={self.logit_temp}, pretrain_mask_length={self.mask_length}")
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ValueError(f"pretrain_mask_prob must be a probability in [0, 1], got {self.mask_prob}")
        self.final_proj = keras.layers.Dense(self.final_dim, name="final_proj")
        self.acc_masked = keras.metrics.Mean(name="acc_masked")
        self.acc_unmasked = keras.metrics.Mean(name="acc_unmasked")

    def build_head(self):
        self.final_proj.build((None, None, self.config.hidden_size))
        self.label_embs_concat = self.add_weight(
            name="label_embs_concat", shape=(self.num_clusters, self.final_dim),
            initializer=keras.initializers.RandomUniform(0.0, 1.0),
        )

    # ------------------------------------------------------------------------- forward
    def call(self, input_values=None, attention_mask=None, labels=None, mask_time_indices=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False,
             exact_padding=False, output_layers=None):
        inputs = unpack_inputs(input_values, self.input_names, {
            "attention_mask": attention_mask, "labels": labels, "mask_time_indices": mask_time_indices})
        x = check_audio(to_float_tensor(inputs["input_values"], "input_values"), self.config.receptive_field)
        mask = inputs.get("mask_time_indices")
        if mask is None:
            # The task's span mask, drawn before the body runs: frame counts follow from the conv formula.
            frames = self.hubert.num_frames(tf.shape(x)[1])
            lengths = frame_lengths(sample_lengths(x, inputs.get("attention_mask")), self.config)
            mask = compute_span_mask(tf.shape(x)[0], frames, self.mask_prob, self.mask_length, PRETRAIN_MIN_MASKS,
                                     lengths)
        mask = tf.cast(mask, tf.bool)
        # The body: conv features (gradient x feature_grad_mult) -> projection -> masked frames replaced
        # by masked_spec_embed -> Transformer.
        outputs = self.body({**inputs, "input_values": x}, mask_time_indices=mask, output_extract_features=True,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            output_layers=output_layers, exact_padding=exact_padding, training=training)
        features_pen = tf.reduce_mean(tf.square(tf.cast(outputs["extract_features"], tf.float32)))
        logits = self.cluster_logits(outputs["last_hidden_state"])  # [batch, frames, num_clusters]
        loss = None
        if inputs.get("labels") is not None:
            loss = self.masked_prediction(inputs["labels"], logits, mask, features_pen, outputs["frame_lengths"])["loss"]
        return self.finish(HubertPreTrainingOutput(
            loss=loss, logits=logits, mask_time_indices=mask, features_pen=features_pen,
            hidden_states=outputs.get("hidden_states"), attentions=outputs.get("attentions"),
        ), return_dict)

    def cluster_logits(self, hidden):
        """[batch, frames, hidden] -> cosine similarity of final_proj(hidden) with every cluster embedding,
        divided by `logit_temp`: [batch, frames, num_clusters] (float32)."""
        projected = tf.cast(self.final_proj(hidden), tf.float32)  # [batch, frames, final_dim]
        projected = tf.math.l2_normalize(projected, axis=-1, epsilon=1e-16)
        embeddings = tf.math.l2_normalize(tf.cast(self.label_embs_concat, tf.float32), axis=-1, epsilon=1e-16)
        return tf.einsum("btd,kd->btk", projected, embeddings) / self.logit_temp

    # ------------------------------------------------------------------------- loss
    def masked_prediction(self, labels, logits, mask_time_indices, features_pen, frame_lengths):
        """The fairseq HuBERT loss and its counts.

        loss = (w_m * sum CE(masked) + w_u * sum CE(unmasked)) / sample_size + feature_pen_weight * pen,
        sample_size = frames counted by the non-zero weights (fairseq sums, then divides the gradient by
        the sample size). Under a `tf.distribute` strategy the sample size is the global batch's, as in
        fairseq, so the loss and gradients equal one device's however the masked frames fall on the
        replicas.

        Returns the dict of `masked_prediction_terms` plus `loss`.
        """
        aligned = self.align_labels(labels, tf.shape(logits)[1])
        terms = masked_prediction_terms(logits, aligned, tf.cast(mask_time_indices, tf.bool), frame_lengths)
        total = tf.constant(0.0)
        sample_size = tf.constant(0.0)
        if self.pred_masked_weight > 0:
            total += self.pred_masked_weight * terms["sum_masked"]
            sample_size += terms["count_masked"]
        if self.pred_nomask_weight > 0:
            total += self.pred_nomask_weight * terms["sum_unmasked"]
            sample_size += terms["count_unmasked"]
        loss = total / _global_sample_size(sample_size)
        if self.feature_pen_weight != 0:
            loss += self.feature_pen_weight * tf.cast(features_pen, tf.float32)
        return {**terms, "loss": loss}

    def align_labels(self, labels, num_frames):
        """Checked cluster ids at `label_rate` -> int32 [batch, num_frames] (see `align_labels`)."""
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank is not None and labels.shape.rank != 2:
            raise ValueError(f"labels must have shape [batch, label_frames] (cluster ids), got {tuple(labels.shape)}")
        return align_labels(self.validate_labels(labels), num_frames, self.label_rate, self.frame_rate)

    def validate_labels(self, labels):
        return check_ids(labels, self.num_clusters, "num_clusters")

    def _terms_for(self, x, y, y_pred):
        inputs = unpack_inputs(x, self.input_names, {})
        labels = y if y is not None else inputs.get("labels")
        if labels is None:
            raise ValueError("no labels to compute the pretraining loss from: give the dataset a 'labels' key "
                             "(cluster ids per frame) or yield (inputs, labels) tuples")
        return self.masked_prediction(labels, y_pred["logits"], y_pred["mask_time_indices"],
                                      y_pred["features_pen"], self.frame_lengths(inputs))

    def loss_from_outputs(self, x, y, y_pred):
        return self._terms_for(x, y, y_pred)["loss"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: the base class's loss; also updates the `acc_masked` / `acc_unmasked` metrics."""
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if not has_compiled_loss(self):
            terms = self._terms_for(x, y, y_pred)
            self.acc_masked.update_state(terms["correct"], sample_weight=terms["masked"])
            self.acc_unmasked.update_state(terms["correct"], sample_weight=terms["unmasked"])
        return loss
