"""MultiWorkerMirroredStrategy for real: two worker processes on loopback ports (TF_CONFIG) train a tiny
TFHubertForCTC and TFHubertForPreTraining with `hubert_tf.training.fit_distributed` on the same global
batches as one process on one device, and end with the same losses and weights (float tolerance).

Also documents the upstream gap the entry point exists for: Keras 3's `fit()` fails under the strategy
(keras-team/keras#20585)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_child.py")
TIMEOUT = 120  # seconds for a whole run; the processes are killed past it


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(args, script=CHILD):
    """Starts a child with its output in temporary files (a full pipe would block a worker, and then its
    peer waiting on it)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, script, json.dumps(args)], stdout=out, stderr=err, text=True, env=env)
    proc.files = (out, err)
    return proc


def finish(procs):
    """Waits for every process, at most TIMEOUT s in all. When one fails the others are killed at once (a
    worker whose peer died would wait for it forever), as are all of them past the timeout.

    Returns (returncode, stdout, stderr) of each."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(proc.poll() is None for proc in procs):
            if any(proc.poll() not in (None, 0) for proc in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    outputs = []
    for proc in procs:
        texts = []
        for f in proc.files:
            f.seek(0)
            texts.append(f.read())
            f.close()
        outputs.append((proc.returncode, *texts))
    assert time.monotonic() <= deadline, f"timed out after {TIMEOUT} s: {[o[2][-1500:] for o in outputs]}"
    return outputs


def result_of(output):
    returncode, out, err = output
    assert returncode == 0, err[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line:\n{out[-2000:]}\n{err[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def run_two_workers(args, tmp_path, name):
    ports = free_ports(2)
    out = str(tmp_path / f"{name}.npz")
    procs = [start(dict(args, ports=ports, index=i, out=out)) for i in (1, 0)]
    outputs = finish(procs)
    for output in outputs[:1]:  # worker 1 prints nothing but must succeed
        assert output[0] == 0, output[2][-3000:]
    return result_of(outputs[1]), out


def run_all(model, tmp_path, **extra):
    """One process on one device, one with MirroredStrategy on two logical CPUs, and two workers, all at
    once, on the same global batches. Returns {name: (result, weights file)}."""
    outs = {name: str(tmp_path / f"{model}-{name}.npz") for name in ("single", "mirrored")}
    single = start({"model": model, "out": outs["single"], "epochs": 2, **extra})
    mirrored = start({"model": model, "out": outs["mirrored"], "epochs": 2, "mirrored": True, **extra})
    try:
        multi, multi_out = run_two_workers({"model": model, "epochs": 2, **extra}, tmp_path, model)
    finally:
        single_result, mirrored_result = (result_of(output) for output in finish([single, mirrored]))
    return {"single": (single_result, outs["single"]), "mirrored": (mirrored_result, outs["mirrored"]),
            "multi": (multi, multi_out)}


def assert_same_training(ours, reference, what):
    (result, weights), (want, want_weights) = ours, reference
    assert len(result["steps"]) == len(want["steps"]) == 8, what
    np.testing.assert_allclose(result["steps"], want["steps"], rtol=1e-5, err_msg=what)
    assert result["history"].keys() == want["history"].keys()
    for key in want["history"]:  # "loss", acc_masked / acc_unmasked (pretraining), accuracy (classification)
        np.testing.assert_allclose(result["history"][key], want["history"][key], rtol=1e-5, err_msg=f"{what} {key}")
    with np.load(want_weights) as a, np.load(weights) as b:
        assert a.files == b.files and len(a.files) > 10
        for key in a.files:
            if key.endswith("k_proj/bias"):
                # Its gradient is mathematically zero (softmax is shift invariant): Adam turns the rounding
                # noise, which differs with the reduction order, into lr-sized steps.
                assert np.abs(a[key]).max() < 1e-2 and np.abs(b[key]).max() < 1e-2, key
                continue
            np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=f"{what} {key}")


@pytest.mark.parametrize("model, extra", [
    pytest.param("ctc", {}, id="ctc"),
    pytest.param("pretraining", {}, marks=pytest.mark.slow, id="pretraining"),
    # compile(metrics=["accuracy"]): the metric over the global batch, as on one device
    pytest.param("classification", {}, marks=pytest.mark.slow, id="classification"),
    # The README recipe's data: make_dataset with length buckets and padding, reshuffled per epoch.
    pytest.param("ctc", {"make_dataset": True}, marks=pytest.mark.slow, id="ctc-make_dataset"),
])
def test_two_workers_train_like_one_device(model, extra, tmp_path):
    runs = run_all(model, tmp_path, **extra)
    assert [runs[name][0]["replicas"] for name in ("single", "mirrored", "multi")] == [1, 2, 2]
    for name in ("single", "mirrored", "multi"):
        print(f"{model} {name}: {runs[name][0]['steps']}")
    assert runs["single"][0]["steps"][-1] < runs["single"][0]["steps"][0]  # it trained
    assert_same_training(runs["multi"], runs["single"], f"{model}: two workers vs one device")
    assert_same_training(runs["mirrored"], runs["single"], f"{model}: MirroredStrategy vs one device")


KERAS_FIT = r"""
import json, os, sys
args = json.loads(sys.argv[1])
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in args["ports"]]},
                                      "task": {"type": "worker", "index": args["index"]}})
import keras, numpy as np, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
ds = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.ones((8, 1), "float32"))).batch(4)
try:
    model.fit(ds, epochs=1, verbose=0)
    print("RESULT " + json.dumps({"error": None}))
except Exception as error:
    print("RESULT " + json.dumps({"error": f"{type(error).__name__}: {str(error)[:200]}"}))
"""


@pytest.mark.slow
def test_keras_fit_still_fails_under_multi_worker(tmp_path):
    """The upstream gap (keras-team/keras#20585) the entry point works around. When this test fails,
    Keras fixed it: `model.fit()` may then be documented for several workers too."""
    script = tmp_path / "keras_fit.py"
    script.write_text(KERAS_FIT)
    ports = free_ports(2)
    outputs = finish([start({"ports": ports, "index": i}, str(script)) for i in (1, 0)])
    error = result_of(outputs[1])["error"]
    assert error is not None and "unsupported type" in error, error


# ----------------------------------------------------------------------------- in this process, one device
def tiny_ctc(tiny_config):
    import keras

    from hubert_tf import TFHubertForCTC

    keras.utils.set_random_seed(0)
    model = TFHubertForCTC(tiny_config.copy(mask_time_prob=0.0, layerdrop=0.0, hidden_dropout=0.0,
                                            activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
                                            final_dropout=0.0))
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    return model


def ctc_batches(labels_high=12):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    data = {"input_values": rng.standard_normal((8, 3200)).astype("float32"),
            "labels": rng.integers(1, labels_high, (8, 5)).astype("int32")}
    return tf.data.Dataset.from_tensor_slices(data).batch(4)


def test_one_device_equals_keras_fit(tiny_config):
    from hubert_tf.training import fit_distributed

    ours, theirs = tiny_ctc(tiny_config), tiny_ctc(tiny_config)
    history = fit_distributed(ours, ctc_batches(), epochs=2)
    keras_history = theirs.fit(ctc_batches(), epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], keras_history.history["loss"], rtol=1e-5)
    assert len(history.step_losses) == 4
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)


def test_compiled_metrics_as_in_keras_fit(tiny_config):
    # compile(metrics=["accuracy"]) on a classification head: fit_distributed logs the metric per epoch
    # (built on the first batch, reset every epoch) with the values of Keras' fit().
    import keras
    import tensorflow as tf

    from hubert_tf import TFHubertForSequenceClassification
    from hubert_tf.training import fit_distributed

    def model():
        keras.utils.set_random_seed(0)
        m = TFHubertForSequenceClassification(tiny_config.copy(num_labels=3, id2label=None, label2id=None,
                                                                   layerdrop=0.0, mask_time_prob=0.0))
        m.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
        return m

    rng = np.random.default_rng(0)
    batches = tf.data.Dataset.from_tensor_slices(
        (rng.standard_normal((8, 3200)).astype("float32"), rng.integers(0, 3, 8).astype("int32"))).batch(4)
    ours, theirs = model(), model()
    seen = []

    class Logs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(sorted(logs))

    history = fit_distributed(ours, batches, epochs=3, callbacks=[Logs()])
    keras_history = theirs.fit(batches, epochs=3, verbose=0, shuffle=False)
    assert sorted(history.history) == sorted(keras_history.history) == ["accuracy", "loss"]
    assert seen[0] == ["accuracy", "loss"]
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(history.history[key], keras_history.history[key], rtol=1e-5, err_msg=key)
    assert len(set(history.history["accuracy"])) > 1  # the metric moves (it is reset every epoch)


def test_callbacks_stop_and_bad_inputs_raise(tiny_config):
    import keras

    from hubert_tf.training import fit_distributed

    model = tiny_ctc(tiny_config)

    class StopAfterOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            assert set(logs) == {"loss"} and np.isfinite(logs["loss"])
            self.model.stop_training = True

    history = fit_distributed(model, ctc_batches(), epochs=5, callbacks=[StopAfterOne()])
    assert len(history.history["loss"]) == 1
    assert len(fit_distributed(model, ctc_batches(), epochs=1, steps_per_epoch=1).step_losses) == 1
    with pytest.raises(ValueError, match=r"labels must be in \[0, 12\)"):
        fit_distributed(model, ctc_batches(labels_high=40), epochs=1)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int, got 0"):
        fit_distributed(model, ctc_batches(), steps_per_epoch=0)
    uncompiled = tiny_ctc(tiny_config)
    uncompiled.optimizer = None
    with pytest.raises(ValueError, match=r"no optimizer: compile\(\) it"):
        fit_distributed(uncompiled, ctc_batches())
