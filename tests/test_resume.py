"""Kill-and-resume: a training process SIGKILLed mid-epoch and started again continues from its last
backup (`fit_distributed(backup_dir=...)`) to the same losses and final weights as an uninterrupted run;
backups are one atomically written file, checked against the model when read."""

import os

import keras
import numpy as np
import pytest
from test_multiworker import finish, result_of, start

from hubert_tf.training import TrainingState, load_backup, save_backup
from hubert_tf.training.backup import BACKUP_NAME

STEPS = 8  # 2 epochs of 4 global batches
BACKUP_EVERY = 3  # backups after steps 3, 4 (epoch end), 6
KILL_AT = 7  # mid-epoch 2: the restart goes back to step 6 and runs step 7 again


@pytest.mark.parametrize("model", [
    "ctc",
    # compile(metrics=["accuracy"]): the metric's running state is in the backup too
    pytest.param("classification", marks=pytest.mark.slow),
])
def test_killed_run_resumes_to_the_same_weights(tmp_path, model):
    backup = str(tmp_path / "backup")
    common = {"model": model, "epochs": 2, "backup_every": BACKUP_EVERY}
    uninterrupted = start(dict(common, out=str(tmp_path / "plain.npz"), backup_dir=str(tmp_path / "plain")))
    try:
        killed = start(dict(common, out=str(tmp_path / "killed.npz"), backup_dir=backup, kill_at=KILL_AT))
        code, _, err = finish([killed])[0]
        assert code == -9, f"the run was not SIGKILLed (return code {code}): {err[-2000:]}"
        assert not os.path.exists(tmp_path / "killed.npz")  # it never finished
        state_file = os.path.join(backup, BACKUP_NAME)
        assert os.listdir(backup) == [BACKUP_NAME]  # no temporary file left behind
        resumed = result_of(finish([start(dict(common, out=str(tmp_path / "resumed.npz"), backup_dir=backup))])[0])
    finally:
        plain = result_of(finish([uninterrupted])[0])
    print(f"uninterrupted {plain['steps']}\nresumed {resumed['steps']}")
    assert len(plain["steps"]) == STEPS
    # The restart ran exactly the batches after the last backup (steps 7 and 8), with the same losses.
    assert len(resumed["steps"]) == STEPS - 6
    np.testing.assert_allclose(resumed["steps"], plain["steps"][6:], rtol=1e-6)
    assert resumed["history"].keys() == plain["history"].keys()
    for key in plain["history"]:  # "loss", and "accuracy" for classification
        np.testing.assert_allclose(resumed["history"][key], plain["history"][key], rtol=1e-6, err_msg=key)
    with np.load(tmp_path / "plain.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert not os.path.exists(state_file)  # finished: the next run starts afresh
    assert not os.path.exists(tmp_path / "plain" / BACKUP_NAME)


def tiny_model(tiny_config, **overrides):
    from hubert_tf import TFHubertForCTC

    keras.utils.set_random_seed(0)
    model = TFHubertForCTC(tiny_config.copy(**overrides))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


def test_backup_round_trip_and_bad_backups(tiny_config, tmp_path, monkeypatch):
    model = tiny_model(tiny_config)
    state = TrainingState(epoch=1, step_in_epoch=3, global_step=7, history={"loss": [2.5]}, epoch_losses=[1.0, 2.0])
    assert load_backup(tmp_path, model) is None  # no backup yet
    path = save_backup(tmp_path, model, state)
    model.optimizer.iterations.assign(123)
    saved = [v.numpy().copy() for v in model.weights]
    for v in model.trainable_weights:
        v.assign(v + 1.0)
    assert load_backup(tmp_path, model) == state
    assert int(model.optimizer.iterations.numpy()) == 0
    for v, want in zip(model.weights, saved):
        np.testing.assert_array_equal(v.numpy(), want)

    # A failed write leaves the previous backup whole.
    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", lambda f, **arrays: (f.write(b"half"), 1 / 0))
        with pytest.raises(ZeroDivisionError):
            save_backup(tmp_path, model, TrainingState(epoch=9))
    assert load_backup(tmp_path, model).epoch == 1 and os.listdir(tmp_path) == [BACKUP_NAME]

    other = tiny_model(tiny_config, vocab_size=13)  # lm_head of another shape
    with pytest.raises(ValueError, match=r"training_state\.npz: model variable .*lm_head.* shape"):
        load_backup(tmp_path, other)
    with open(path, "wb") as f:
        f.write(b"not a zip")
    with pytest.raises(ValueError, match=r"training_state\.npz: not a readable training backup"):
        load_backup(tmp_path, model)
