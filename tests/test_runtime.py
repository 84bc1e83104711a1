"""`hubert_tf.runtime`: the automatic dtype choice and the warning for emulated bfloat16, with the CPU's
flags and `ONEDNN_MAX_CPU_ISA` monkeypatched (so every CPU type is checked on this one)."""

import warnings

import pytest

from hubert_tf import cpu, runtime

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512vl"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16"}


@pytest.fixture
def cpu_flags(monkeypatch):
    """Sets the CPU flags hubert_tf.cpu reports; clears the cap and the warned-once memory."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(runtime, "_warned", set())

    def set_flags(flags):
        monkeypatch.setattr(cpu, "flags", lambda: flags)

    return set_flags


@pytest.mark.parametrize("flags, inference, training", [
    (AVX2_ONLY, "float32", "float32"),
    (AVX512, "float32", "float32"),
    (AVX512_BF16, "bfloat16", "mixed_bfloat16"),
    (AMX, "bfloat16", "mixed_bfloat16"),
    (frozenset(), "float32", "float32"),  # flags unknown: the safe choice
])
def test_default_dtype_picks_bfloat16_only_where_native(cpu_flags, flags, inference, training):
    cpu_flags(flags)
    assert runtime.default_dtype() == inference
    assert runtime.default_dtype(training=True) == training


def test_default_dtype_follows_the_onednn_cap(cpu_flags, monkeypatch):
    cpu_flags(AVX512_BF16)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert runtime.default_dtype() == "float32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert runtime.default_dtype() == "bfloat16"


def test_emulated_bfloat16_warns_once(cpu_flags):
    cpu_flags(AVX2_ONLY)
    with pytest.warns(UserWarning, match=r"without native bfloat16 \(AVX2.*slower than in float32.*"
                                         r"dtype='float32'.*default_dtype"):
        assert runtime.warn_if_emulated("bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not runtime.warn_if_emulated("bfloat16")  # once per process
        assert not runtime.warn_if_emulated("float32")


@pytest.mark.parametrize("flags", [AVX512_BF16, AMX])
def test_native_bfloat16_does_not_warn(cpu_flags, flags):
    cpu_flags(flags)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not runtime.warn_if_emulated("bfloat16")


def test_avx512_cap_without_bf16_warns(cpu_flags, monkeypatch):
    cpu_flags(AVX512_BF16)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # oneDNN emulates bfloat16 there
    with pytest.warns(UserWarning, match="AVX-512, no AVX512_BF16"):
        runtime.warn_if_emulated("bfloat16")


def test_native_bfloat16_capped_to_avx2_warns_of_the_abort(cpu_flags, monkeypatch):
    # TensorFlow picks oneDNN's bfloat16 kernels from the CPU flags; oneDNN capped at AVX2 cannot build
    # them and the process aborts on the first matmul: say so up front, and what to use instead.
    cpu_flags(AVX512_BF16)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.warns(UserWarning, match="ONEDNN_MAX_CPU_ISA=AVX2.*aborts the process.*dtype='float32'"):
        assert runtime.warn_if_emulated("bfloat16")
    assert not runtime.warn_if_emulated("float32")


def test_building_a_bfloat16_model_warns_at_the_callers_line(cpu_flags):
    from harness import TINY

    from hubert_tf import HubertConfig, TFHubertModel

    cpu_flags(AVX2_ONLY)
    config = HubertConfig(**TINY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TFHubertModel(config, dtype="float32")
        TFHubertModel(config, dtype="mixed_bfloat16")
        TFHubertModel(config, dtype="bfloat16")
    slow = [w for w in caught if "without native bfloat16" in str(w.message)]
    assert len(slow) == 1, [str(w.message) for w in caught]
    assert slow[0].filename == __file__
