"""Choices that depend on the CPU the model runs on: which dtype to compute in.

bfloat16 halves the memory traffic of every matrix product, but it is fast only where the CPU computes
it in hardware (AVX512_BF16 or AMX, see `hubert_tf.cpu.native_bfloat16`). Elsewhere (AVX2-only CPUs)
oneDNN emulates it, converting every operand to float32 and back, so a bfloat16 model is slower than the
same model in float32 and less accurate. `default_dtype()` is the opt-in automatic choice; building a
model in bfloat16 where it is emulated warns once per process.

Example:

>>> from hubert_tf import runtime
>>> runtime.default_dtype() in ("bfloat16", "float32")
True
>>> model = TFHubertForCTC.from_pretrained("facebook/hubert-large-ls960-ft",
...                                        dtype=runtime.default_dtype())  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import warnings

from . import cpu

_warned: set[str] = set()


def default_dtype(training: bool = False) -> str:
    """The fastest dtype policy for this CPU: bfloat16 where it runs in hardware, float32 elsewhere.

    Args:
        training: give the policy for training: "mixed_bfloat16" (float32 variables, bfloat16 compute)
            instead of "bfloat16".

    Returns:
        "bfloat16" (or "mixed_bfloat16" with `training`) when `hubert_tf.cpu.native_bfloat16()`,
        otherwise "float32". A `ONEDNN_MAX_CPU_ISA` cap below AVX512_CORE_BF16 counts as no native
        bfloat16, as it does for oneDNN.

    Example:

    >>> default_dtype(training=True) in ("mixed_bfloat16", "float32")
    True
    """
    if not cpu.native_bfloat16():
        return "float32"
    return "mixed_bfloat16" if training else "bfloat16"


def warn_if_emulated(compute_dtype: str) -> bool:
    """Warns (once per process) when `compute_dtype` is bfloat16 and this CPU has no native bfloat16,
    so the model will be slower than in float32. Returns True when it warned.

    A CPU with native bfloat16 run under a `ONEDNN_MAX_CPU_ISA` cap below AVX-512 (e.g. AVX2, to time
    an AVX2 machine) gets a stronger warning: TensorFlow picks oneDNN's bfloat16 kernels from the CPU's
    flags and the capped oneDNN cannot create them, so TensorFlow 2.21 aborts on the first bfloat16
    matmul (building, saving or exporting the model still works).

    Args:
        compute_dtype: a Keras policy's compute dtype ("bfloat16" for both "bfloat16" and "mixed_bfloat16").
    """
    if compute_dtype != "bfloat16" or cpu.native_bfloat16() or compute_dtype in _warned:
        return False
    _warned.add(compute_dtype)
    if {"avx512_bf16", "amx_bf16"} & cpu.flags() and cpu.isa() in ("AVX2", "AVX", "SSE"):
        # native bfloat16 capped below AVX-512 (an AVX512_CORE cap only emulates it, and works)
        message = (f"hubert_tf: dtype bfloat16 under ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA')}: "
                   "this CPU has native bfloat16, so TensorFlow picks oneDNN's bfloat16 kernels, which the "
                   "capped oneDNN cannot create: the first bfloat16 matmul aborts the process. Use "
                   "dtype='float32' under the cap, or unset it.")
    else:
        message = (f"hubert_tf: dtype bfloat16 on a CPU without native bfloat16 ({cpu.isa()}, no AVX512_BF16 or "
                   "AMX): bfloat16 matrix products are emulated, converting their operands to float32 and back, "
                   "so this model will be slower than in float32, and less accurate. Use dtype='float32', or "
                   "hubert_tf.runtime.default_dtype() to pick bfloat16 only where the CPU computes it.")
    warnings.warn(message, UserWarning, stacklevel=_caller_stacklevel())
    return True


def _caller_stacklevel() -> int:
    # the warning points at the user's line that built the model, not at Keras' constructor wrappers
    skip = tuple(os.path.dirname(m.__file__) for m in (sys.modules["hubert_tf"], sys.modules.get("keras"))
                 if m is not None and getattr(m, "__file__", None))
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level
