"""`TFWav2Vec2AttnAdapterLayer`: the per-language bottleneck adapter MMS puts after every encoder layer."""

from __future__ import annotations

import keras

register = keras.saving.register_keras_serializable(package="hubert_tf")

# The reference builds the adapter's norm as `nn.LayerNorm(hidden_size)`: torch's default epsilon, not
# `config.layer_norm_eps`.
ADAPTER_NORM_EPS = 1e-5


@register
class TFWav2Vec2AttnAdapterLayer(keras.layers.Layer):
    """The reference `Wav2Vec2AttnAdapterLayer`: layer norm -> dense(hidden -> adapter_attn_dim) -> ReLU ->
    dense(adapter_attn_dim -> hidden). Its output is added to the encoder layer's (a residual), and its
    weights (with the CTC head's) are what `load_adapter(target_lang)` swaps per language.

    Args:
        hidden_size: int. Encoder width.
        adapter_attn_dim: int. Bottleneck width (16 in MMS-1b-all).

    Example:

    >>> import numpy as np
    >>> layer = TFWav2Vec2AttnAdapterLayer(8, 4)
    >>> layer(np.zeros((1, 3, 8), "float32")).shape
    TensorShape([1, 3, 8])
    """

    def __init__(self, hidden_size, adapter_attn_dim, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.adapter_attn_dim = adapter_attn_dim
        self.norm = keras.layers.LayerNormalization(epsilon=ADAPTER_NORM_EPS, name="norm")
        self.linear_1 = keras.layers.Dense(adapter_attn_dim, name="linear_1")
        self.linear_2 = keras.layers.Dense(hidden_size, name="linear_2")

    def build(self, input_shape=None):
        self.norm.build((None, None, self.hidden_size))
        self.linear_1.build((None, None, self.hidden_size))
        self.linear_2.build((None, None, self.adapter_attn_dim))

    def call(self, x):
        # x: [batch, frames, hidden] -> [batch, frames, hidden]
        return self.linear_2(keras.ops.relu(self.linear_1(self.norm(x))))

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "adapter_attn_dim": self.adapter_attn_dim}
