"""Functional composition (issue 6): a pretrained TFHubertModel used as a layer inside a functional
`keras.Model` with a new head trains with `fit`, saves as `.keras`, reloads with
`keras.saving.load_model` without custom_objects (in this process and in a fresh one) and gives the same
outputs. (The subclassed models' own `.keras` round trip is the harness's `run_keras_file_round_trip`,
run for every model class in test_model_api.py, test_classification.py and test_pretraining.py.)"""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import assert_close, fixture_dir
from hubert_tf import TFHubertModel

RATE = 16000
# Keras' fit() converts tensors with np.array(x), which numpy 2 flags; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def audio(batch, seconds, seed):
    return np.random.default_rng(seed).standard_normal((batch, int(seconds * RATE))).astype(np.float32)


def classifier(with_mask=False):
    """waveform (+ mask) -> pretrained HuBERT -> mean over frames -> Dense(3)."""
    hubert = TFHubertModel.from_pretrained(fixture_dir("bare_large"))
    x = keras.Input((None,), name="input_values")
    inputs = [x]
    if with_mask:
        mask = keras.Input((None,), dtype="int32", name="attention_mask")
        inputs.append(mask)
        hidden = hubert(x, attention_mask=mask)["last_hidden_state"]  # [batch, frames, hidden]
    else:
        hidden = hubert(x)["last_hidden_state"]
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)  # [batch, hidden]
    logits = keras.layers.Dense(3, name="head")(pooled)  # [batch, 3]
    return keras.Model(inputs if with_mask else x, logits), hubert


def hubert_weights(model):
    layer = next(l for l in model.layers if isinstance(l, TFHubertModel))
    return [w.numpy() for w in layer.weights]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model, hubert = classifier()
    before = [w.numpy() for w in hubert.weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = audio(8, 0.25, 0), np.arange(8) % 3
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    path = str(tmp_path_factory.mktemp("functional") / "classifier.keras")
    model.save(path)
    return model, before, history.history["loss"], path


def test_functional_model_trains(trained):
    model, before, losses, _ = trained
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    changed = [not np.array_equal(a, b) for a, b in zip(before, hubert_weights(model))]
    assert any(changed), "fit did not update the HuBERT layer's weights"


def test_functional_model_reloads_from_keras_file(trained):
    model, _, _, path = trained
    reloaded = keras.saving.load_model(path)  # no custom_objects: the classes are registered
    assert isinstance(next(l for l in reloaded.layers if isinstance(l, keras.Model)), TFHubertModel)
    for a, b in zip(hubert_weights(model), hubert_weights(reloaded)):
        np.testing.assert_array_equal(a, b)
    for seconds in (0.25, 1.0):  # any length, not only the training one
        x = audio(2, seconds, 1)
        assert_close(reloaded(x), model(x), 1e-6, f"reloaded {seconds} s")


def test_keras_file_loads_in_a_fresh_process(trained, tmp_path):
    """A new process only imports hubert_tf (which registers the classes) and calls load_model."""
    model, _, _, path = trained
    x = audio(1, 0.5, 2)
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import numpy as np, keras, hubert_tf
        model = keras.saving.load_model({path!r})
        np.save({str(tmp_path / "y.npy")!r}, model(np.load({str(tmp_path / "x.npy")!r})).numpy())
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_close(np.load(tmp_path / "y.npy"), model(x), 1e-6, "fresh process")


def test_functional_model_with_attention_mask(tmp_path):
    """Two inputs (audio, mask) reload from `.keras` with the same outputs."""
    model, _ = classifier(with_mask=True)
    x = audio(2, 0.5, 3)
    mask = np.ones_like(x, np.int32)
    mask[1, 5000:] = 0
    x[1, 5000:] = 0.0
    model.save(tmp_path / "masked.keras")
    reloaded = keras.saving.load_model(tmp_path / "masked.keras")
    inputs = {"input_values": x, "attention_mask": mask}
    assert_close(reloaded(inputs), model(inputs), 1e-6, "masked reload")
