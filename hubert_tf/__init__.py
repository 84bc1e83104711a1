"""HuBERT for TensorFlow 2 / Keras 3: numerically the reference `transformers` HuBERT.

Importing the package registers every layer and model with Keras, so `keras.saving.load_model` reads
`.keras` files of hubert_tf models with no `custom_objects`.
"""

__version__ = "0.1.0"

from .configuration import HubertConfig
from .modeling import (
    TFHubertEncoder,
    TFHubertEncoderStableLayerNorm,
    TFHubertFeatureEncoder,
    TFHubertForCTC,
    TFHubertForPreTraining,
    TFHubertForSequenceClassification,
    TFHubertMainLayer,
    TFHubertModel,
    TFHubertPreTrainedModel,
)
from .pipelines import extract_features, transcribe
from .processing import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor, load_audio
