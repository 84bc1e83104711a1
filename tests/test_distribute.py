"""`tf.distribute.MirroredStrategy` on two logical CPU devices trains like one device on the same global
batch: same loss history (per-replica losses combine into the global "sum" or "mean" CTC loss), same
weights afterwards, same evaluate() loss.

Logical devices must be configured before TensorFlow initialises its devices, so the training runs in a
fresh Python process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np
from hubert_tf import HubertConfig, TFHubertForCTC

GLOBAL_BATCH = 4
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 3200)).astype("float32")
mask = np.ones((8, 3200), "int32")
mask[1::2, 2400:] = 0
x[mask == 0] = 0.0
labels = rng.integers(1, 12, (8, 6)).astype("int32")
labels[::3, 4:] = -100
dataset = tf.data.Dataset.from_tensor_slices({"input_values": x, "attention_mask": mask, "labels": labels})
dataset = dataset.batch(GLOBAL_BATCH)

results = {}
for reduction in ("sum", "mean"):
    # No randomness in training (dropout, layerdrop, SpecAugment), so both runs compute the same thing.
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=12,
        conv_dim=(16, 24, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
        ctc_loss_reduction=reduction,
    )
    keras.utils.set_random_seed(0)
    initial = TFHubertForCTC(config).get_weights()
    for name, strategy in (("single", tf.distribute.get_strategy()),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        with strategy.scope():
            model = TFHubertForCTC(config)
            model.set_weights(initial)
            model.compile(optimizer=keras.optimizers.SGD(1e-3 if reduction == "sum" else 1e-2))
        history = model.fit(dataset, epochs=3, verbose=0).history["loss"]
        results[f"{reduction}/{name}"] = {
            "replicas": strategy.num_replicas_in_sync,
            "history": history,
            "evaluate": model.evaluate(dataset, verbose=0),
            "weights": [w.tolist() for w in model.get_weights()],
        }
json.dump(results, sys.stdout)
"""


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mirrored_strategy_matches_one_device(results, reduction):
    single, mirrored = results[f"{reduction}/single"], results[f"{reduction}/mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    print(f"{reduction}: one device {single['history']} / evaluate {single['evaluate']:.5f}; "
          f"MirroredStrategy {mirrored['history']} / evaluate {mirrored['evaluate']:.5f}")
    np.testing.assert_allclose(mirrored["history"], single["history"], rtol=1e-5)
    np.testing.assert_allclose(mirrored["evaluate"], single["evaluate"], rtol=1e-5)
    assert single["history"][-1] < single["history"][0]  # it trained
    for ours, theirs in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-6)
