"""Activation functions by the names the reference config uses (`hidden_act`, `feat_extract_activation`).

Importing this module does not import TensorFlow, so `HubertConfig` stays light.
"""

ACTIVATION_NAMES = (
    "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu",
    "relu", "relu6", "silu", "swish", "selu", "elu", "tanh", "sigmoid", "linear",
)


def get_activation(name: str):
    """Returns the TensorFlow function for activation `name`, with the reference's numerics.

    "gelu" is the exact (erf) GELU as in torch; "gelu_new"/"gelu_pytorch_tanh" the tanh approximation.
    """
    import tensorflow as tf

    table = {
        # torch's formula; tf.nn.gelu(approximate=False) (erfc form) is ~40 % slower in TF graphs on CPU
        "gelu": lambda x: 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476)),
        "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
        "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
        "gelu_fast": lambda x: 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
        "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
        "relu": tf.nn.relu,
        "relu6": tf.nn.relu6,
        "silu": tf.nn.silu,
        "swish": tf.nn.silu,
        "selu": tf.nn.selu,
        "elu": tf.nn.elu,
        "tanh": tf.tanh,
        "sigmoid": tf.sigmoid,
        "linear": tf.identity,
    }
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(table)}") from None
