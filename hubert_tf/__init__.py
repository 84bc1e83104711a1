"""HuBERT for TensorFlow 2 / Keras 3: numerically the reference `transformers` HuBERT."""

__version__ = "0.1.0"

from .configuration import HubertConfig
from .modeling import (
    TFHubertEncoder,
    TFHubertEncoderStableLayerNorm,
    TFHubertFeatureEncoder,
    TFHubertForCTC,
    TFHubertMainLayer,
    TFHubertModel,
    TFHubertPreTrainedModel,
)
