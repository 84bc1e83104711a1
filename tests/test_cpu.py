"""hubert_tf.cpu: the ISA and native-bfloat16 answers from CPU flags, and oneDNN's ISA cap."""

import pytest

from hubert_tf import cpu

ZEN5 = frozenset("fma avx avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16".split())
ZEN2 = frozenset("fma avx avx2".split())
SAPPHIRE = ZEN5 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize("flags, isa, bf16", [
    (ZEN5, "AVX-512", True), (ZEN2, "AVX2", False), (SAPPHIRE, "AMX", True),
    (frozenset({"avx512f"}), "AVX-512", False),  # AVX-512 without BF16 (Skylake-X): emulated bf16
    (frozenset({"sse4_2"}), "SSE", False), (frozenset(), "unknown", False),
])
def test_isa_and_native_bfloat16(flags, isa, bf16, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert cpu.isa(flags) == isa
    assert cpu.native_bfloat16(flags) is bf16


def test_onednn_cap_lowers_the_answer(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu.isa(ZEN5) == "AVX2"
    assert cpu.native_bfloat16(ZEN5) is False
    # a cap above what the CPU has changes nothing
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert cpu.isa(ZEN2) == "AVX2"
    assert cpu.native_bfloat16(SAPPHIRE) is True


def test_describe_this_machine():
    info = cpu.describe()
    assert set(info) == {"cpu", "isa", "native_bfloat16", "cores", "vector_flags"}
    assert info["isa"] in ("AMX", "AVX-512", "AVX2", "AVX", "SSE", "unknown")
    assert isinstance(info["cpu"], str) and info["cpu"]
