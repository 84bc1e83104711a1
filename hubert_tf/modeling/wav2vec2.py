"""wav2vec 2.0 / XLS-R / MMS: the HuBERT classes with a `Wav2Vec2Config` and the `wav2vec2` body name.

The architectures are one: the same conv feature encoder, feature projection (wav2vec2's always with
its layer norm), positional conv and Transformer (post-LN for base, stable layer norm for large, XLS-R
and MMS, which adds per-language attention adapters). So these classes change only the config class
and the body's name, which is the prefix of its weights in the reference checkpoints (`wav2vec2.`);
every layer and every surface (pipelines, export, TFLite, `fit()`) is the HuBERT one.
"""

from __future__ import annotations

import os

import keras

from ..configuration import Wav2Vec2Config
from .classification import TFHubertForSequenceClassification
from .ctc import TFHubertForCTC
from .model import TFHubertModel

register = keras.saving.register_keras_serializable(package="hubert_tf")


class _Wav2Vec2Family:
    """Mixin of the wav2vec2 classes: their config class and body name (`model.wav2vec2`, as in
    transformers, is the same layer as `model.hubert`)."""

    config_class = Wav2Vec2Config
    body_name = "wav2vec2"

    @property
    def wav2vec2(self):
        return self.hubert


@register
class TFWav2Vec2Model(_Wav2Vec2Family, TFHubertModel):
    """The bare wav2vec 2.0 model (the reference `Wav2Vec2Model`): waveform -> hidden states.

    Same call, outputs and options as `TFHubertModel`.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import Wav2Vec2Config, TFWav2Vec2Model
    >>> model = TFWav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4))
    >>> model(np.zeros((1, 16000), "float32")).last_hidden_state.shape
    TensorShape([1, 49, 32])
    """


@register
class TFWav2Vec2ForCTC(_Wav2Vec2Family, TFHubertForCTC):
    """wav2vec 2.0 with a linear CTC head (the reference `Wav2Vec2ForCTC`): waveform -> per-frame logits.

    Same call, outputs, loss and training as `TFHubertForCTC`. MMS checkpoints (`adapter_attn_dim` set)
    swap languages with `load_adapter(target_lang)`.

    Example:

    >>> from hubert_tf import TFWav2Vec2ForCTC, transcribe
    >>> model = TFWav2Vec2ForCTC.from_pretrained("facebook/wav2vec2-base-960h")  # doctest: +SKIP
    >>> transcribe("speech.flac", model)  # doctest: +SKIP
    >>> mms = TFWav2Vec2ForCTC.from_pretrained("facebook/mms-1b-all", target_lang="fra")  # doctest: +SKIP
    >>> mms.load_adapter("deu")  # doctest: +SKIP
    """

    target_lang = None

    def load_adapter(self, target_lang: str, **hub_kwargs) -> None:
        """Loads the attention adapters and CTC head of one language (MMS): `adapter.<lang>.safetensors`
        from where the model was loaded (`from_pretrained`'s directory or hub id).

        Args:
            target_lang: the language id, e.g. "eng" or "fra" (the file's `<lang>`).
            **hub_kwargs: revision, cache_dir, local_files_only, token.

        A head of another vocabulary size replaces `lm_head` (and sets `config.vocab_size`), as the
        reference does; give the processor the same `target_lang` to decode.

        Raises:
            ValueError: the config has no `adapter_attn_dim`, or the file's keys or shapes do not match.
            OSError: no adapter file for that language.

        Example:

        >>> model = TFWav2Vec2ForCTC.from_pretrained("facebook/mms-1b-all")  # doctest: +SKIP
        >>> model.load_adapter("fra")  # doctest: +SKIP
        """
        from ..checkpoints.loading import load_adapter

        load_adapter(self, target_lang, **hub_kwargs)
        self.target_lang = target_lang


@register
class TFWav2Vec2ForSequenceClassification(_Wav2Vec2Family, TFHubertForSequenceClassification):
    """wav2vec 2.0 with an utterance classification head (the reference
    `Wav2Vec2ForSequenceClassification`). Same call, outputs and training as
    `TFHubertForSequenceClassification`.

    Example:

    >>> import numpy as np
    >>> from hubert_tf import Wav2Vec2Config, TFWav2Vec2ForSequenceClassification
    >>> model = TFWav2Vec2ForSequenceClassification(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1,
    ...     num_attention_heads=4, intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4,
    ...     num_labels=3))
    >>> model(np.zeros((1, 16000), "float32")).logits.shape
    TensorShape([1, 3])
    """


# HuBERT class -> its wav2vec2 sibling (same head, other config class and body name).
WAV2VEC2_CLASSES = {
    TFHubertModel: TFWav2Vec2Model,
    TFHubertForCTC: TFWav2Vec2ForCTC,
    TFHubertForSequenceClassification: TFWav2Vec2ForSequenceClassification,
}
_HUBERT_CLASSES = {w: h for h, w in WAV2VEC2_CLASSES.items()}


def sibling_class(cls: type, model_type: str):
    """The class with `cls`'s head for configs of `model_type` ("hubert" / "wav2vec2"), or None."""
    if model_type == cls.config_class.model_type:
        return cls
    if model_type == "wav2vec2":
        return WAV2VEC2_CLASSES.get(cls)
    if model_type == "hubert":
        return _HUBERT_CLASSES.get(cls)
    return None


def class_for_checkpoint(cls: type, config, source: str | os.PathLike) -> type:
    """The class `cls.from_pretrained` builds for `config`: `cls` itself, or for a HuBERT class given a
    wav2vec2 checkpoint its wav2vec2 sibling (so `TFHubertForCTC.from_pretrained(<wav2vec2 dir>)` and
    every surface built on it work). The other way round is a ValueError naming the class to use."""
    model_type = config.model_type
    if model_type == cls.config_class.model_type:
        return cls
    other = sibling_class(cls, model_type)
    if model_type == "wav2vec2" and other is not None:
        return other
    hint = f"; load it with {other.__name__}" if other is not None else ""
    raise ValueError(f"{os.fspath(source)}: a {model_type!r} checkpoint, which {cls.__name__} does not load "
                     f"(it takes model_type {cls.config_class.model_type!r}){hint}")
