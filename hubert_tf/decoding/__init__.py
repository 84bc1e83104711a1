"""Better transcripts than greedy CTC: confidence scores, forced alignment and beam search (with an
optional KenLM language model and hotwords, `pip install "hubert_tf[lm]"`).

Nothing here imports TensorFlow; the language-model decoder imports its library only when built.
"""

from .alignment import Alignment, align_text, forced_align, min_frames, transcript_to_ids
from .confidence import add_confidence, greedy_confidence, log_softmax, path_log_probs, span_confidence

__all__ = [
    "Alignment", "align_text", "forced_align", "min_frames", "transcript_to_ids",
    "add_confidence", "greedy_confidence", "log_softmax", "path_log_probs", "span_confidence",
    "BeamSearchDecoderWithLM", "load_decoder",
]


def __getattr__(name):
    # The beam-search module is imported on first use: its library is an optional extra.
    if name in ("BeamSearchDecoderWithLM", "load_decoder"):
        from . import beam

        return getattr(beam, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
