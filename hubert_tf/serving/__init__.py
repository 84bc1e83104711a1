"""Pieces of the audio-to-text pipeline that run inside a TensorFlow graph (so inside an exported
SavedModel): per-utterance normalisation as `HubertFeatureExtractor` does, and greedy CTC decoding to
the text `HubertCTCTokenizer.batch_decode` gives.

`hubert_tf.export.export_saved_model(model, path, processor=...)` puts both around the model in the
`transcribe` / `transcribe_padded` signatures.
"""

from .ctc import GreedyCTCDecoder
from ..processing.normalize import normalize_audio

__all__ = ["GreedyCTCDecoder", "normalize_audio"]
