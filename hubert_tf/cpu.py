"""What this CPU can do: its vector ISA and whether it computes bfloat16 natively.

The speed of the model depends on it: oneDNN's float32 kernels use AVX-512 where present and AVX2
otherwise, and bfloat16 runs at twice the float32 rate only with AVX512_BF16 or AMX; elsewhere it is
emulated and slower than float32. Read from /proc/cpuinfo (Linux); elsewhere the flags are unknown
and `isa()` says so.

Example:

>>> from hubert_tf import cpu
>>> cpu.isa() in ("AMX", "AVX-512", "AVX2", "AVX", "SSE", "unknown")
True
"""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def flags() -> frozenset[str]:
    """The CPU's feature flags (lower case, as /proc/cpuinfo spells them); empty when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def model_name() -> str:
    """The CPU's model name ("AMD EPYC", ...), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa(cpu_flags: frozenset[str] | None = None) -> str:
    """The widest vector ISA: "AMX", "AVX-512", "AVX2", "AVX", "SSE" or "unknown".

    `ONEDNN_MAX_CPU_ISA` (oneDNN's own cap, e.g. "AVX2") lowers the answer the way it lowers the
    kernels oneDNN picks, so a capped run reports what it measures.
    """
    f = flags() if cpu_flags is None else cpu_flags
    if not f:
        return "unknown"
    if "amx_bf16" in f or "amx_tile" in f:
        found = "AMX"
    elif "avx512f" in f:
        found = "AVX-512"
    elif "avx2" in f:
        found = "AVX2"
    elif "avx" in f:
        found = "AVX"
    else:
        found = "SSE"
    order = ["SSE", "AVX", "AVX2", "AVX-512", "AMX"]
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    capped = {"SSE41": "SSE", "AVX": "AVX", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2",
              "AVX512_CORE": "AVX-512", "AVX512_CORE_VNNI": "AVX-512", "AVX512_CORE_BF16": "AVX-512",
              "AVX10_1_512": "AVX-512", "AVX512_CORE_AMX": "AMX", "AVX10_1_512_AMX": "AMX"}.get(cap)
    if capped is not None and order.index(capped) < order.index(found):
        return capped
    return found


def native_bfloat16(cpu_flags: frozenset[str] | None = None) -> bool:
    """True when bfloat16 matrix products run in hardware (AVX512_BF16 or AMX-BF16), i.e. faster than
    float32; False where oneDNN would emulate them (AVX2-only CPUs) or the flags are unknown.
    A `ONEDNN_MAX_CPU_ISA` cap below AVX512_CORE_BF16 counts as no native bfloat16."""
    f = flags() if cpu_flags is None else cpu_flags
    if not ({"avx512_bf16", "amx_bf16"} & f):
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap not in ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_1_512",
                           "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"):
        return False
    return True


def describe() -> dict:
    """{"cpu", "isa", "native_bfloat16", "cores", "vector_flags"}: what a benchmark report needs."""
    f = flags()
    vector = sorted(x for x in f if x.startswith(("avx", "amx", "fma")))
    return {"cpu": model_name(), "isa": isa(), "native_bfloat16": native_bfloat16(), "cores": os.cpu_count(),
            "vector_flags": vector}
