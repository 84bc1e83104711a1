"""Audio in, text out: audio loading, feature extraction, CTC tokenization and the processor.

None of these need `transformers` or `torch`; TensorFlow is imported only when TF tensors are
requested (``return_tensors="tf"``).
"""

from hubert_tf.processing.audio import load_audio, resample
from hubert_tf.processing.feature_extraction import BatchFeature, HubertFeatureExtractor
from hubert_tf.processing.processor import HubertProcessor
from hubert_tf.processing.processor_with_lm import HubertProcessorWithLM
from hubert_tf.processing.tokenization import HubertCTCTokenizer, HubertCTCTokenizerOutput

__all__ = [
    "BatchFeature",
    "HubertCTCTokenizer",
    "HubertCTCTokenizerOutput",
    "HubertFeatureExtractor",
    "HubertProcessor",
    "HubertProcessorWithLM",
    "load_audio",
    "resample",
]
