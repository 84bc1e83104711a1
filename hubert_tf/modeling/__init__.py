"""Keras layers and models of HuBERT (and of wav2vec 2.0, the same layers)."""

from .attention import TFHubertAttention
from .base import TFHubertPreTrainedModel
from .classification import TFHubertForSequenceClassification
from .encoder import TFHubertEncoder, TFHubertEncoderLayer, TFHubertEncoderStableLayerNorm, TFHubertFeedForward
from .feature_encoder import TFHubertFeatureEncoder, TFHubertFeatureProjection
from .ctc import TFHubertForCTC
from .model import TFHubertModel
from .main_layer import TFHubertMainLayer
from .outputs import BaseModelOutput, CausalLMOutput, ModelOutput, SequenceClassifierOutput
from .positional_conv import TFHubertPositionalConvEmbedding
from .pretraining import HubertPreTrainingOutput, TFHubertForPreTraining
from .inference import inference_function
from .adapters import TFWav2Vec2AttnAdapterLayer
from .wav2vec2 import TFWav2Vec2ForCTC, TFWav2Vec2ForSequenceClassification, TFWav2Vec2Model
