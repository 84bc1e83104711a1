"""`TensorRecord`: one tensor of a checkpoint file, described from the header before any byte is read.

Every reader can *plan* a file (names, dtypes, shapes, byte counts) and read each tensor on demand, so
loading checks the plan against the model first and reads only the tensors the model uses.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """A tensor of a checkpoint file, not yet read.

    Attributes:
        name: the key in the file (reference naming for safetensors / bin; the Keras name for h5).
        dtype: the stored dtype: a numpy dtype, or the string "bfloat16" (numpy has none).
        shape: tuple of ints.
        nbytes: bytes `read()` takes from the file (for stride-0 views this can be less than the
            materialised size; readers refuse views whose materialised size exceeds their storage).
        read: materialises the tensor as a numpy array (bfloat16 widened to float32).
        source: the file it lives in (named in errors).
    """

    name: str
    dtype: object
    shape: tuple
    nbytes: int
    read: Callable[[], np.ndarray] = dataclasses.field(repr=False, compare=False)
    source: str = ""

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
