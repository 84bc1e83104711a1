"""The feature encoder's fast formulations: `conv_windows` against a direct numpy reference, the windowed
matmul conv against TensorFlow's conv op on both ISA paths (the conv op where oneDNN has a direct conv,
AVX-512; the windowed matmul below it, AVX2), and (slow) the speed of the windowed conv under an AVX2 cap.

Parity with the reference model is tests/test_parity.py (which reaches every branch on this CPU's path;
`ONEDNN_MAX_CPU_ISA=AVX2 python -m pytest tests/test_parity.py` reaches the AVX2 path)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hubert_tf import cpu
from hubert_tf.modeling import feature_encoder
from hubert_tf.modeling.feature_encoder import TFHubertConvLayer, TFHubertFeatureEncoder, conv_windows


def reference_windows(x, kernel_size, stride):
    frames = max((x.shape[1] - kernel_size) // stride + 1, 0)
    rows = [x[:, t * stride: t * stride + kernel_size].reshape(x.shape[0], -1) for t in range(frames)]
    return np.stack(rows, 1) if rows else np.zeros((x.shape[0], 0, kernel_size * x.shape[2]), x.dtype)


GEOMETRIES = [(10, 5), (3, 2), (2, 2), (6, 4), (4, 4), (3, 4), (1, 3), (9, 5), (1, 1)]


def test_conv_windows_match_the_windows():
    rng = np.random.default_rng(0)
    for length in (0, 1, 4, 9, 10, 11, 37, 100):
        for channels in (1, 3):
            x = rng.standard_normal((2, length, channels)).astype(np.float32)
            for kernel_size, stride in GEOMETRIES:
                np.testing.assert_array_equal(conv_windows(tf.constant(x), kernel_size, stride).numpy(),
                                              reference_windows(x, kernel_size, stride),
                                              err_msg=f"length {length}, k={kernel_size}, s={stride}")


def test_conv_windows_in_a_graph_take_any_batch_and_length():
    rng = np.random.default_rng(1)
    for kernel_size, stride in GEOMETRIES:
        fn = tf.function(lambda a: conv_windows(a, kernel_size, stride), input_signature=[tf.TensorSpec([None, None, 3])])
        for batch, length in ((2, 37), (1, 0), (3, 8)):
            x = rng.standard_normal((batch, length, 3)).astype(np.float32)
            np.testing.assert_array_equal(fn(tf.constant(x)).numpy(), reference_windows(x, kernel_size, stride))


def test_conv_windows_refuses_kernels_wider_than_two_strides():
    with pytest.raises(ValueError, match="kernel_size <= 2 \\* stride, got kernel_size=5, stride=2"):
        conv_windows(tf.zeros([1, 10, 1]), 5, 2)


@pytest.mark.parametrize("direct_conv", [True, False], ids=["conv_op", "windowed"])
@pytest.mark.parametrize("norm, use_bias, activation", [
    (None, False, "gelu"), (None, True, "gelu"), ("layer", True, "gelu"), (None, False, "relu"),
])
@pytest.mark.parametrize("kernel_size, stride", [(3, 2), (2, 2), (4, 3)])
def test_conv_layer_paths_agree_with_the_conv_op(monkeypatch, direct_conv, norm, use_bias, activation,
                                                 kernel_size, stride):
    monkeypatch.setattr(feature_encoder, "direct_conv_available", lambda: direct_conv)
    layer = TFHubertConvLayer(24, 32, kernel_size, stride, use_bias=use_bias, norm=norm, activation=activation)
    layer.build()
    if use_bias:
        layer.conv.bias.assign(np.linspace(-1, 1, 32).astype(np.float32))
    x = tf.constant(np.random.default_rng(0).standard_normal((3, 203, 24)).astype(np.float32))
    y = tf.nn.conv1d(x, layer.conv.kernel, stride, "VALID") + (layer.conv.bias if use_bias else 0.0)
    if norm == "layer":
        y = layer.layer_norm(y)
    expected = layer.activation_fn(y).numpy()
    for training in (False, True):
        got = tf.function(lambda a: layer(a, training=training))(x).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5, err_msg=f"training={training}")


def test_direct_conv_follows_the_onednn_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not feature_encoder.direct_conv_available()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert feature_encoder.direct_conv_available() == (
        feature_encoder.onednn_enabled() and cpu.isa() in ("AVX-512", "AMX"))


def test_both_paths_give_the_same_base_style_features(monkeypatch):
    # the base model's stack (group norm after the first conv) at a tenth of its width
    encoder = TFHubertFeatureEncoder([48] * 7, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    encoder.build()
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 8000)).astype(np.float32))
    outputs = {}
    for direct_conv in (True, False):
        monkeypatch.setattr(feature_encoder, "direct_conv_available", lambda: direct_conv)
        outputs[direct_conv] = tf.function(lambda a: encoder(a))(x).numpy()
    assert outputs[True].shape == (2, 24, 48)
    np.testing.assert_allclose(outputs[False], outputs[True], atol=1e-5, rtol=1e-5)


_SPEED_CHILD = r"""
import json, sys, time
import numpy as np, tensorflow as tf
from hubert_tf.modeling import feature_encoder
from hubert_tf.modeling.feature_encoder import TFHubertConvLayer
layer = TFHubertConvLayer(512, 512, 3, 2)
layer.build()
x = tf.constant(np.random.default_rng(0).standard_normal((1, 8001, 512)).astype(np.float32))
fns = {"conv_op": tf.function(lambda a: layer.activation_fn(layer.conv(a))),
       "windowed": tf.function(lambda a: layer._windowed_conv(a, activate=True))}
times = {name: [] for name in fns}
for name, fn in fns.items():
    fn(x).numpy()
for _ in range(15):
    for name, fn in fns.items():
        start = time.perf_counter(); fn(x).numpy(); times[name].append(time.perf_counter() - start)
print(json.dumps({name: min(t) for name, t in times.items()}))
"""


@pytest.mark.slow
def test_windowed_conv_is_faster_than_the_conv_op_on_avx2():
    # The reason for the AVX2 path: oneDNN's AVX2 conv for these shapes is an im2col + GEMM. Fastest of
    # 15 alternated calls of the base model's second conv layer (a quarter of its frames).
    if not ({"avx2"} <= cpu.flags()) or not feature_encoder.onednn_enabled():
        pytest.skip("needs an AVX2 CPU and oneDNN")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _SPEED_CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    best = json.loads(out.stdout.strip().splitlines()[-1])
    assert best["windowed"] < 0.9 * best["conv_op"], best


@pytest.mark.parametrize("direct_conv", [True, False], ids=["conv_op", "windowed"])
@pytest.mark.parametrize("norm, use_bias, in_channels, kernel_size, stride", [
    (None, False, 24, 3, 2), (None, True, 24, 2, 2), ("layer", True, 24, 3, 2), ("group", False, 1, 10, 5),
    (None, False, 24, 5, 2),
])
def test_scaled_forward_carries_its_gain(monkeypatch, direct_conv, norm, use_bias, in_channels, kernel_size, stride):
    # forward(g * x, input_gain=g, scaled_output=True) is sqrt(2) * layer(x) (or layer(x) with gain 1 where
    # the GELU is fused into the windowed matmul): the protocol the feature encoder chains.
    monkeypatch.setattr(feature_encoder, "direct_conv_available", lambda: direct_conv)
    layer = TFHubertConvLayer(in_channels, 32, kernel_size, stride, use_bias=use_bias, norm=norm)
    layer.build()
    if use_bias:
        layer.conv.bias.assign(np.linspace(-1, 1, 32).astype(np.float32))
    x = tf.constant(np.random.default_rng(2).standard_normal((2, 203, in_channels)).astype(np.float32))
    expected = layer(x).numpy()
    for input_gain in (1.0, feature_encoder.GELU_GAIN):
        y, gain = layer.forward(x * input_gain, input_gain=input_gain, scaled_output=True)
        fused = norm is None and kernel_size <= 2 * stride and (kernel_size == stride or not direct_conv)
        assert gain == (1.0 if fused else feature_encoder.GELU_GAIN)
        np.testing.assert_allclose(y.numpy() / gain, expected, atol=2e-5, rtol=1e-5,
                                   err_msg=f"input gain {input_gain}")


def test_the_encoder_runs_three_elementwise_passes_per_gelu_between_layers(monkeypatch):
    # The point of the gains: on the conv-op path the GELUs of the base stack's first five layers are
    # `y + y * erf(y)` (erf of the conv or norm output itself, no scaling pass before it); layer 5
    # (kernel == stride: windowed, GELU fused into the matmul) and the last take the plain formula
    # (erf of `z * 0.7071`); the output is the layers' own.
    monkeypatch.setattr(feature_encoder, "direct_conv_available", lambda: True)
    encoder = TFHubertFeatureEncoder([16] * 7, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    encoder.build()
    x = tf.constant(np.random.default_rng(3).standard_normal((1, 4000)).astype(np.float32))
    fn = tf.function(lambda a: encoder(a))
    graph = fn.get_concrete_function(tf.TensorSpec([None, None])).graph
    erf_inputs = [op.inputs[0].op.type for op in graph.get_operations() if op.type == "Erf"]
    assert len(erf_inputs) == 7 and erf_inputs.count("Mul") == 2, erf_inputs
    h = tf.expand_dims(x, -1)
    for layer in encoder.conv_layers:
        h = layer(h)
    np.testing.assert_allclose(fn(x).numpy(), h.numpy(), atol=2e-5, rtol=1e-5)
