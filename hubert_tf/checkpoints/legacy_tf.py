"""The old transformers TensorFlow checkpoints (`tf_model.h5`) as a reference-named state dict.

Their variable names are ours (the old TF classes used the reference module names too), e.g.
`tf_hubert_for_ctc/hubert/encoder/layers.0/attention/q_proj/kernel:0`, and their layouts are ours
except `weight_v`, which the old code kept in the PyTorch layout [out, in / groups, k].
"""

from __future__ import annotations

import numpy as np

from .formats.legacy_h5 import read_legacy_tf_h5
from .names import LEAF_NAMES

# Variables the old TF code stored in the reference (PyTorch) layout rather than the Keras one.
_REFERENCE_LAYOUT_LEAVES = ("weight_v",)


def read_legacy_state_dict(path) -> dict[str, np.ndarray]:
    """Reads `tf_model.h5` into {reference key: array in the reference layout}."""
    state = {}
    for name, value in read_legacy_tf_h5(path).items():
        parts = name.split(":")[0].split("/")[1:]  # drop the model scope and ":0"
        leaf = parts[-1]
        if leaf not in LEAF_NAMES:
            raise ValueError(f"{path}: unknown weight {name!r} in the legacy TF checkpoint")
        module = ".".join(parts[:-1])
        key = f"{module}.{LEAF_NAMES[leaf][0]}" if module else LEAF_NAMES[leaf][0]
        if value.ndim >= 2 and leaf not in _REFERENCE_LAYOUT_LEAVES:
            value = np.transpose(value)
        state[key] = value
    return state
