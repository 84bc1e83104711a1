"""`fit_distributed`: a training loop over `strategy.run` that works on one device, under
`MirroredStrategy` and under `MultiWorkerMirroredStrategy`.

Keras 3's `fit()` fails under `MultiWorkerMirroredStrategy` before the first step (keras-team/keras
#20585: its symbolic build reduces the first distributed batch with a cross-worker "MEAN", which the
collective ops cannot do for dicts or even plain tensors). This loop does what `fit()`'s train step does
with our models: the model's own loss (`model.compute_loss`, which scales a "mean" loss by the number of
replicas so summed gradients equal one device on the global batch), the compiled optimizer (loss
scaling for mixed precision included), the metrics given to `compile()`, Keras callbacks (logging,
`EarlyStopping`, `CSVLogger`, `TensorBoard`, ...) and, with `backup_dir`, crash-safe backups that
resume mid-epoch at the exact batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from ..modeling._tf_runtime import compiled_metrics
from ..modeling.base import _reraise_label_errors
from .backup import TrainingState, load_backup, remove_backup, save_backup


def is_chief(strategy=None) -> bool:
    """True on the one worker that writes files (backups, logs): always on one machine; under a
    multi-worker strategy the task that `TF_CONFIG` names "chief", or "worker" 0 without a chief."""
    strategy = strategy or tf.distribute.get_strategy()
    return bool(strategy.extended.should_checkpoint)


def _sharded(dataset: tf.data.Dataset, strategy) -> tf.data.Dataset:
    # Unless the dataset chose a policy (e.g. FILE for many TFRecord shards), every worker reads the same
    # global batches and keeps its part of each (DATA sharding): the global batch of step i is the same
    # whatever the number of workers, as on one device.
    policy = dataset.options().experimental_distribute.auto_shard_policy
    if strategy.extended._in_multi_worker_mode() and policy == tf.data.experimental.AutoShardPolicy.AUTO:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


def _keras_y_pred(model, y_pred):
    # the outputs as compiled metrics see them in fit() (a classification head's logits; see
    # TFHubertPreTrainedModel.compute_metrics), the outputs themselves for other Keras models
    return model._keras_y_pred(y_pred) if hasattr(model, "_keras_y_pred") else y_pred


def _built_compiled_metrics(model, dataset: tf.data.Dataset, strategy):
    """The model's compiled metrics, built, or None when it has none or the batches carry no labels to
    match them with. `fit()` builds them in its symbolic build; here on the first example of the first
    batch, under the strategy's scope (their variables are then distributed ones)."""
    compiled = compiled_metrics(model)
    if compiled is None:
        return None
    if not compiled.built:
        batch = next(iter(dataset.take(1)), None)
        if batch is None:
            return None
        x, y, _ = keras.utils.unpack_x_y_sample_weight(tf.nest.map_structure(lambda t: t[:1], batch))
        if y is None:
            return None
        with strategy.scope():
            compiled.build(y, _keras_y_pred(model, model(x, training=False)))
    return compiled


def fit_distributed(
    model: keras.Model,
    dataset: tf.data.Dataset | Callable[[int], tf.data.Dataset],
    strategy: tf.distribute.Strategy | None = None,
    *,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    callbacks: Iterable[keras.callbacks.Callback] | None = None,
    backup_dir: str | os.PathLike | None = None,
    backup_every: int | None = None,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Trains `model` like `model.fit(dataset, epochs=..., steps_per_epoch=...)`, under any
    `tf.distribute` strategy.

    Args:
        model: a HuBERT model (or any Keras model whose `compute_loss` gives the loss), created and
            compiled (with an optimizer) under `strategy.scope()`.
        dataset: a `tf.data.Dataset` of *global* batches (dicts with "labels", or `(inputs, labels)`),
            or a function `epoch -> Dataset` (for shuffling that is reproducible after a restart:
            shuffle with `seed=base_seed + epoch`). A plain Dataset is iterated anew every epoch; for an
            exact resume its order must not depend on how often it was iterated.
        strategy: defaults to the current one (`tf.distribute.get_strategy()`).
        epochs: number of epochs.
        steps_per_epoch: batches per epoch; None = until the dataset ends (under a multi-worker strategy
            give it, or batch with `drop_remainder=True`, so every worker runs the same number of steps).
        callbacks: Keras callbacks; they get `on_train_batch_end` logs `{"loss": the batch's global
            loss}` and `on_epoch_end` logs `{"loss": mean of the epoch's batch losses}`, both with the
            metrics over the epoch so far: those given to `compile(metrics=...)` (e.g. "accuracy" of a
            classification head, on the global batch as in `fit()`) and the model's own (`acc_masked`,
            ...). `model.stop_training = True` stops (EarlyStopping).
        backup_dir: when given, training state is saved there (one file, atomically, by the chief only)
            every `backup_every` steps and at the end of every epoch, and a run that finds a backup there
            continues from it: same weights, optimizer slots and step counter, and the data position
            (the remaining batches of the interrupted epoch are the ones an uninterrupted run would see).
            Deleted when training ends (not on a crash), as `keras.callbacks.BackupAndRestore` does.
            Every worker must see the same directory (a shared filesystem on several machines).
        backup_every: steps between backups (None: at epoch ends only).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch (chief only).

    Returns:
        A `keras.callbacks.History` (`history.history["loss"]` per epoch, those before a restart
        included); `history.step_losses` holds the per-step global losses of this run.

    Raises:
        ValueError: no optimizer (compile first), bad `epochs` / `steps_per_epoch` / `backup_every`,
            bad labels or inputs (as from `fit()`), or a backup that does not match the model.

    Example:

    >>> strategy = tf.distribute.MultiWorkerMirroredStrategy()  # TF_CONFIG set   # doctest: +SKIP
    >>> with strategy.scope():                                                      # doctest: +SKIP
    ...     model = TFHubertForCTC.from_pretrained(MODEL, ctc_zero_infinity=True)
    ...     model.compile(optimizer=keras.optimizers.AdamW(3e-5))
    >>> fit_distributed(model, train, strategy, epochs=3, steps_per_epoch=1000,     # doctest: +SKIP
    ...                 backup_dir="/shared/run1/backup", backup_every=200)
    """
    strategy = strategy or tf.distribute.get_strategy()
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError("the model has no optimizer: compile() it (under strategy.scope()) first")
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("backup_every", backup_every)):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    chief = is_chief(strategy)
    with strategy.scope():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    # Before a backup is read: the compiled metrics' variables are part of it.
    compiled = _built_compiled_metrics(model, dataset(0) if callable(dataset) else dataset, strategy)

    def replica_step(batch):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        if compiled is not None and y is not None:
            # what fit()'s compute_metrics does, without reading every metric's result each step
            compiled.update_state(y, _keras_y_pred(model, y_pred), sample_weight=sample_weight)
        return loss

    @tf.function
    def distributed_step(batch):
        # compute_loss already divided a "mean" loss by the replicas: the sum is the global loss.
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(batch,)), axis=None)

    train_step = _reraise_label_errors(distributed_step)

    state = TrainingState()
    if backup_dir is not None:
        state = load_backup(backup_dir, model) or state

    history = keras.callbacks.History()
    history.history = {k: list(v) for k, v in state.history.items()}
    history.step_losses = []
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [history], add_progbar=bool(verbose) and chief, model=model,
        verbose=verbose if chief else 0, epochs=epochs, steps=steps_per_epoch,
    )

    def backup():
        if backup_dir is not None and chief:
            state.history = {k: v for k, v in history.history.items()}
            save_backup(backup_dir, model, state)

    # The compiled metrics and the model's own (e.g. TFHubertForPreTraining's acc_masked, updated by
    # compute_loss); the "loss" tracker of Keras' train_step is not used here (the loss comes from the
    # step). Unbuilt compiled metrics (no labels to build them on) are left out.
    metrics = [m for m in model.metrics
               if m.name != "loss" and (compiled is not None or m is not compiled_metrics(model))]

    def metric_logs():
        logs = {}
        for metric in metrics:
            result = metric.result()
            if isinstance(result, dict):  # CompileMetrics: one entry per compiled metric
                logs.update({name: float(value) for name, value in result.items()})
            else:
                logs[metric.name] = float(result)
        return logs

    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(state.epoch, epochs):
        source = dataset(epoch) if callable(dataset) else dataset
        skip = state.step_in_epoch
        if steps_per_epoch is not None:
            source = source.take(steps_per_epoch)
        if skip:
            source = source.skip(skip)
        iterator = iter(strategy.experimental_distribute_dataset(_sharded(source, strategy)))
        callback_list.on_epoch_begin(epoch)
        if not skip:  # after a restart the backup restored the epoch's metric states
            for metric in metrics:
                metric.reset_state()
        # The epoch's mean loss counts the batches applied before a restart too (their sum is kept).
        losses = list(state.epoch_losses) if skip else []
        step = skip
        for batch in iterator:
            callback_list.on_train_batch_begin(step)
            loss = float(train_step(batch))
            losses.append(loss)
            history.step_losses.append(loss)
            step += 1
            state.step_in_epoch, state.global_step = step, state.global_step + 1
            state.epoch_losses = losses
            if backup_every is not None and state.global_step % backup_every == 0:
                backup()
            callback_list.on_train_batch_end(step - 1, {"loss": loss, **metric_logs()})
            if model.stop_training:
                break
        if not losses:
            raise ValueError(f"epoch {epoch}: the dataset gave no batch")
        logs = {"loss": float(np.mean(losses)), **metric_logs()}
        callback_list.on_epoch_end(epoch, logs)
        state.epoch, state.step_in_epoch, state.epoch_losses = epoch + 1, 0, []
        backup()
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    if backup_dir is not None and chief:
        # Training ended (all epochs, or stopped by a callback): a new run starts afresh.
        remove_backup(backup_dir)
    return history
