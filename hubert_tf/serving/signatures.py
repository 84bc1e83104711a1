"""The SavedModel signatures: tf.functions around the one model call, for TF Serving.

Two input conventions:

* `serving_default`: `input_values` (normalised audio) + `attention_mask`, the reference's numbers
  (what `model(x, attention_mask=m)` gives). For clients that prepare audio with the processor.
* The `*_lengths` family, `embed` and `classify`: raw `audio` float32 [batch, samples] +
  `audio_lengths` int32 [batch]. Normalisation runs in the graph over each row's valid samples, the
  model runs with exact padding, and every row gives exactly what it gives alone. Lengths survive TF
  Serving's server-side batching, which pads every input of a batch to a common length with values
  the model never asked for; masks do not. Use these behind `--enable_batching`.
"""

from __future__ import annotations

import tensorflow as tf

from ..modeling.inputs import check_attention_mask
from ..modeling.main_layer import resolve_layers
from ..modeling.masking import frame_lengths, lengths_to_mask, masked_mean, sample_lengths
from ..processing.normalize import normalize_audio

SERVE = "serve"  # also written as "serving_default", the signature TF Serving uses by default
TRANSCRIBE = "transcribe"
TRANSCRIBE_PADDED = "transcribe_padded"
TRANSCRIBE_LENGTHS = "transcribe_lengths"
TRANSCRIBE_BEAM = "transcribe_beam"
FORWARD_LENGTHS = "forward_lengths"
EMBED = "embed"
CLASSIFY = "classify"

AUDIO = tf.TensorSpec([None, None], tf.float32, name="audio")
AUDIO_LENGTHS = tf.TensorSpec([None], tf.int32, name="audio_lengths")
INPUT_VALUES = tf.TensorSpec([None, None], tf.float32, name="input_values")
ATTENTION_MASK = tf.TensorSpec([None, None], tf.int32, name="attention_mask")


def main_output_name(model) -> str:
    """"logits" for models with a head, "last_hidden_state" for the bare model."""
    return "last_hidden_state" if type(model).__name__ in ("TFHubertModel", "TFWav2Vec2Model") else "logits"


class Signatures:
    """Builds the signatures of one model (and optionally its processor).

    Args:
        model: a hubert_tf Keras model.
        processor: optional HubertProcessor: its feature extractor's `do_normalize` / `padding_value`
            and its tokenizer (for the text signatures). Without it audio is normalised (as the
            pipelines do) and no text signature is built.
        skip_special_tokens: bool, for the text signatures (see `GreedyCTCDecoder`).
        output_layers: optional list of ints: hidden states `embed` and `forward_lengths` also return
            (as `hidden_state_<layer>`).
        top_k: int, labels `classify` returns per row.
        beam_width, top_paths: int, the CTC beam search of `transcribe_beam` (no LM): beams kept per
            frame and hypotheses returned per row.
    """

    def __init__(self, model, processor=None, skip_special_tokens: bool = False, output_layers=None,
                 top_k: int = 5, beam_width: int = 16, top_paths: int = 4):
        self.model = model
        self.processor = processor
        extractor = getattr(processor, "feature_extractor", None)
        self.do_normalize = bool(getattr(extractor, "do_normalize", True))
        self.padding_value = float(getattr(extractor, "padding_value", 0.0))
        self.skip_special_tokens = skip_special_tokens
        self.output_layers = None if output_layers is None else list(output_layers)
        self.top_k = int(top_k)
        if self.top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        self._decoder = None
        self.beam_width, self.top_paths = beam_width, top_paths

    # ------------------------------------------------------------------------------------------ pieces
    @property
    def has_ctc_head(self) -> bool:
        return hasattr(self.model, "lm_head")

    @property
    def is_classifier(self) -> bool:
        return hasattr(self.model, "classifier")

    @property
    def decoder(self):
        if self._decoder is None:
            from .ctc import GreedyCTCDecoder

            self._decoder = GreedyCTCDecoder(self.processor.tokenizer, self.model.config.vocab_size,
                                             self.skip_special_tokens)
        return self._decoder

    def _checked_lengths(self, audio, audio_lengths):
        checks = [
            tf.debugging.assert_equal(tf.shape(audio_lengths)[0], tf.shape(audio)[0],
                                      message="audio_lengths must have one entry per row of audio"),
            tf.debugging.assert_less_equal(tf.reduce_max(audio_lengths), tf.shape(audio)[1],
                                           message="audio_lengths exceed the samples of audio"),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(audio_lengths)

    def _run(self, audio, attention_mask, **kwargs):
        """raw audio + mask -> normalised in the graph -> the model with exact padding."""
        input_values = normalize_audio(audio, attention_mask, do_normalize=self.do_normalize,
                                       padding_value=self.padding_value)
        return self.model(input_values, attention_mask=attention_mask, exact_padding=True, training=False, **kwargs)

    def _run_lengths(self, audio, audio_lengths, **kwargs):
        audio_lengths = self._checked_lengths(audio, audio_lengths)
        mask = tf.cast(lengths_to_mask(audio_lengths, tf.shape(audio)[1]), tf.int32)
        return self._run(audio, mask, **kwargs), mask

    def _computed_layers(self, with_last: bool):
        """The hidden states to compute (sorted indices): the requested ones, plus the last if needed."""
        layers = list(self.output_layers or []) + ([-1] if with_last else [])
        return resolve_layers(layers, self.model.config.num_hidden_layers) if layers else None

    def _layer_outputs(self, hidden_states, computed):
        """{"hidden_state_<layer>": [batch, frames, hidden]} of the requested layers."""
        if not self.output_layers:
            return {}
        by_index = dict(zip(computed, hidden_states))
        wanted = resolve_layers(self.output_layers, self.model.config.num_hidden_layers)
        return {f"hidden_state_{layer}": tf.cast(by_index[layer], tf.float32) for layer in wanted}

    def _transcribe(self, audio, attention_mask):
        """raw audio (+ mask) -> the model -> greedy CTC text of each row's valid frames."""
        logits = tf.cast(self._run(audio, attention_mask)["logits"], tf.float32)
        valid = frame_lengths(sample_lengths(audio, attention_mask), self.model.config, tf.shape(logits)[1])
        text, token_ids = self.decoder(logits, valid)
        return {"text": text, "token_ids": token_ids, "frame_lengths": valid}

    # ------------------------------------------------------------------------------------------ signatures
    def serve(self):
        """serving_default: input_values + attention_mask -> the main output (reference numbers)."""
        model, name = self.model, main_output_name(self.model)

        @tf.function(input_signature=[INPUT_VALUES, ATTENTION_MASK])
        def serve(input_values, attention_mask):
            attention_mask = check_attention_mask(attention_mask, input_values, model.config.receptive_field)
            outputs = model(input_values, attention_mask=attention_mask, training=False)
            return {name: tf.cast(outputs[name], tf.float32)}

        return serve

    def forward_lengths(self):
        """audio + audio_lengths -> the main output, `frame_lengths` and any `hidden_state_<layer>`."""
        model, name = self.model, main_output_name(self.model)
        # The bare model stops after the highest requested layer: ask for the last one too.
        computed = self._computed_layers(with_last=name == "last_hidden_state" and bool(self.output_layers))

        @tf.function(input_signature=[AUDIO, AUDIO_LENGTHS])
        def forward_lengths(audio, audio_lengths):
            outputs, mask = self._run_lengths(audio, audio_lengths, output_layers=computed)
            result = {name: tf.cast(outputs[name], tf.float32),
                      **self._layer_outputs(outputs.get("hidden_states"), computed)}
            if not self.is_classifier:
                result["frame_lengths"] = frame_lengths(sample_lengths(audio, mask), model.config,
                                                        tf.shape(outputs[name])[1])
            return result

        return forward_lengths

    def embed(self):
        """audio + audio_lengths -> `embedding` [batch, hidden] (mean of the last hidden state over the
        valid frames), `frame_lengths`, and any `hidden_state_<layer>` [batch, frames, hidden]."""
        body = self.model.hubert
        computed = self._computed_layers(with_last=True)

        @tf.function(input_signature=[AUDIO, AUDIO_LENGTHS])
        def embed(audio, audio_lengths):
            audio_lengths = self._checked_lengths(audio, audio_lengths)
            mask = tf.cast(lengths_to_mask(audio_lengths, tf.shape(audio)[1]), tf.int32)
            input_values = normalize_audio(audio, mask, do_normalize=self.do_normalize,
                                           padding_value=self.padding_value)
            outputs = body(input_values, attention_mask=mask, exact_padding=True, output_layers=computed,
                           training=False)
            valid = outputs["frame_lengths"]
            last = tf.cast(outputs["hidden_states"][-1], tf.float32)  # [batch, frames, hidden]
            return {"embedding": masked_mean(last, lengths_to_mask(valid, tf.shape(last)[1])),
                    "frame_lengths": valid, **self._layer_outputs(outputs["hidden_states"], computed)}

        return embed

    def classify(self):
        """audio + audio_lengths -> `scores` [batch, num_labels] (softmax), `top_labels` string
        [batch, k] (id2label names), `top_scores` [batch, k]."""
        model = self.model
        config = model.config
        names = tf.constant([str(config.id2label.get(i, config.id2label.get(str(i), f"LABEL_{i}")))
                             for i in range(config.num_labels)])
        k = min(self.top_k, config.num_labels)

        @tf.function(input_signature=[AUDIO, AUDIO_LENGTHS])
        def classify(audio, audio_lengths):
            outputs, _ = self._run_lengths(audio, audio_lengths)
            scores = tf.nn.softmax(tf.cast(outputs["logits"], tf.float32), axis=-1)
            top_scores, top_ids = tf.math.top_k(scores, k=k)
            return {"scores": scores, "top_labels": tf.gather(names, top_ids), "top_scores": top_scores}

        return classify

    def transcribe(self):
        """audio (every sample valid) -> text, token_ids, frame_lengths."""

        @tf.function(input_signature=[AUDIO])
        def transcribe(audio):
            return self._transcribe(audio, None)

        return transcribe

    def transcribe_padded(self):
        """audio + attention_mask -> text, token_ids, frame_lengths (each row as alone)."""

        @tf.function(input_signature=[AUDIO, ATTENTION_MASK])
        def transcribe_padded(audio, attention_mask):
            return self._transcribe(audio, check_attention_mask(attention_mask, audio, self.model.config.receptive_field))

        return transcribe_padded

    def transcribe_lengths(self):
        """audio + audio_lengths -> text, token_ids, frame_lengths (each row as alone)."""

        @tf.function(input_signature=[AUDIO, AUDIO_LENGTHS])
        def transcribe_lengths(audio, audio_lengths):
            audio_lengths = self._checked_lengths(audio, audio_lengths)
            return self._transcribe(audio, tf.cast(lengths_to_mask(audio_lengths, tf.shape(audio)[1]), tf.int32))

        return transcribe_lengths

    def transcribe_beam(self):
        """audio + audio_lengths -> top-k CTC beam search (`tf.nn.ctc_beam_search_decoder`, no LM): `text`
        string [batch, k], `token_ids` [batch, k, labels], `label_lengths` [batch, k], `log_probs`
        [batch, k] (best first), `frame_lengths` [batch]. Each row as alone (lengths survive batching)."""
        from ..decoding.graph import BeamCTCDecoder

        beam = BeamCTCDecoder(self.processor.tokenizer, self.model.config.vocab_size, self.beam_width,
                              self.top_paths)

        @tf.function(input_signature=[AUDIO, AUDIO_LENGTHS])
        def transcribe_beam(audio, audio_lengths):
            outputs, mask = self._run_lengths(audio, audio_lengths)
            logits = tf.cast(outputs["logits"], tf.float32)
            valid = frame_lengths(sample_lengths(audio, mask), self.model.config, tf.shape(logits)[1])
            return {**beam(logits, valid), "frame_lengths": valid}

        return transcribe_beam

    def available(self) -> list[str]:
        """The endpoint names this model (and processor) supports, in export order."""
        names = [SERVE, FORWARD_LENGTHS]
        if hasattr(self.model, "hubert"):
            names.append(EMBED)
        if self.is_classifier:
            names.append(CLASSIFY)
        if self.processor is not None:
            if not self.has_ctc_head:
                raise ValueError(f"processor= (audio-to-text signatures) needs a CTC model, got "
                                 f"{type(self.model).__name__}")
            names += [TRANSCRIBE, TRANSCRIBE_PADDED, TRANSCRIBE_LENGTHS, TRANSCRIBE_BEAM]
        return names

    def all(self, names=None) -> dict:
        """{endpoint name: tf.function} of the signatures `names` (default: every one `available()`)."""
        available = self.available()
        names = available if names is None else ["serve" if n == "serving_default" else n for n in names]
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"signature(s) {unknown} are not available for {type(self.model).__name__}"
                             f"{'' if self.processor is not None else ' without processor='}; available: {available}")
        if SERVE not in names:
            names = [SERVE] + names  # serving_default is always there: TF Serving's default request
        return {name: getattr(self, name)() for name in names}
