"""A training process for tests/test_multiworker.py and tests/test_resume.py: a tiny deterministic
TFHubertForCTC, TFHubertForPreTraining or TFHubertForSequenceClassification (compiled with the
"accuracy" metric, labels as y) trained with `hubert_tf.training.fit_distributed` on fixed
global batches, one device or one worker of a loopback MultiWorkerMirroredStrategy.

Usage: python training_child.py '<json>' with keys: out (.npz of final weights, chief only), model
("ctc" | "pretraining" | "classification"), epochs, steps, ports + index (multi-worker), backup_dir,
backup_every, kill_at (global step after which the process SIGKILLs itself, mid-epoch), mirrored
(MirroredStrategy on two logical CPUs), examples (default 16). Prints one `RESULT {json}` line."""

import json
import os
import signal
import sys

args = json.loads(sys.argv[1])
if args.get("ports"):
    # Set before TensorFlow starts: the strategy reads it when created.
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in args["ports"]]},
                                          "task": {"type": "worker", "index": args["index"]}})

import time

import keras
import numpy as np
import tensorflow as tf

from hubert_tf import (
    HubertConfig,
    TFHubertForCTC,
    TFHubertForPreTraining,
    TFHubertForSequenceClassification,
)
from hubert_tf.training import fit_distributed, is_chief

EXAMPLES, SAMPLES, GLOBAL_BATCH, FRAMES = args.get("examples", 16), 3200, 4, 39

if args.get("ports"):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
elif args.get("mirrored"):  # two logical CPUs in this process
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    strategy = tf.distribute.get_strategy()
# No randomness inside training (dropout, layerdrop, SpecAugment; the pretraining mask is given), so every
# run computes the same thing.
config = HubertConfig(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=12,
    conv_dim=(16, 24, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4, hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0,
    feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0, num_clusters=7, final_dim=16,
)
rng = np.random.default_rng(0)
x = rng.standard_normal((EXAMPLES, SAMPLES)).astype("float32")
mask = np.ones((EXAMPLES, SAMPLES), "int32")
mask[1::2, 2400:] = 0
x[mask == 0] = 0.0
if args.get("model", "ctc") == "ctc":
    labels = rng.integers(1, 12, (EXAMPLES, 6)).astype("int32")
    labels[::3, 4:] = -100
    columns = {"input_values": x, "attention_mask": mask, "labels": labels}
    model_class = TFHubertForCTC
elif args["model"] == "classification":
    columns = {"input_values": x, "attention_mask": mask, "labels": rng.integers(0, 3, EXAMPLES).astype("int32")}
    model_class = TFHubertForSequenceClassification
    config = config.copy(num_labels=3, id2label=None, label2id=None)
else:
    # Examples with 8 to 27 masked frames: the replicas of a global batch see different numbers of them,
    # and the loss still equals one device's (it is normalised by the global batch's masked frames).
    counts = 8 + (np.arange(EXAMPLES) * 7) % 20
    masked = np.argsort(rng.random((EXAMPLES, FRAMES)), axis=1) < counts[:, None]
    columns = {"input_values": rng.standard_normal((EXAMPLES, SAMPLES)).astype("float32"),
               "labels": rng.integers(0, 7, (EXAMPLES, FRAMES)).astype("int32"), "mask_time_indices": masked}
    model_class = TFHubertForPreTraining
    config = config.copy(mask_time_prob=0.08)  # masked_spec_embed exists; the mask itself is given


def data(epoch):
    # A different, reproducible order every epoch (seed = epoch): a restarted run sees the same batches.
    if args.get("make_dataset"):  # the README recipe: hubert_tf.data.make_dataset, length buckets
        from hubert_tf.data import make_dataset
        from hubert_tf.processing import (
            HubertCTCTokenizer,
            HubertFeatureExtractor,
            HubertProcessor,
        )

        letters = "ABCDEFGH"
        vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters)}}
        processor = HubertProcessor(HubertFeatureExtractor(return_attention_mask=True), HubertCTCTokenizer(vocab))
        waves = [x[i, : 1600 + 100 * i] for i in range(EXAMPLES)]
        texts = ["".join(letters[j % 8] for j in range(i, i + 3 + i % 3)) for i in range(EXAMPLES)]
        return make_dataset(waves, texts, processor, batch_size=GLOBAL_BATCH, seed=epoch, drop_remainder=True,
                            bucket_boundaries=[2400], config=model.config)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.shuffle(EXAMPLES, seed=epoch, reshuffle_each_iteration=False).batch(GLOBAL_BATCH, drop_remainder=True)
    if args.get("model") == "classification":  # (inputs, labels), as fit() takes them with compiled metrics
        ds = ds.map(lambda batch: ({k: v for k, v in batch.items() if k != "labels"}, batch["labels"]))
    return ds


class KillAt(keras.callbacks.Callback):
    """SIGKILLs this process after global step `step` (after that step's backup, if one was due)."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class StepTimes(keras.callbacks.Callback):
    """perf_counter() after every step (for steps/s past the first, traced, step)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


keras.utils.set_random_seed(0)
with strategy.scope():
    model = model_class(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  metrics=["accuracy"] if args.get("model") == "classification" else None)
timer = StepTimes()
callbacks = [timer] + ([KillAt(args["kill_at"])] if args.get("kill_at") else [])
start = time.perf_counter()
history = fit_distributed(model, data, strategy, epochs=args.get("epochs", 2), steps_per_epoch=args.get("steps"),
                          callbacks=callbacks, backup_dir=args.get("backup_dir"),
                          backup_every=args.get("backup_every"))
seconds = time.perf_counter() - start
if is_chief(strategy):
    np.savez(args["out"], **{v.path: v.numpy() for v in model.weights})
    print("RESULT " + json.dumps({"history": history.history, "steps": history.step_losses, "seconds": seconds,
                                  "steps_per_second": (len(timer.times) - 2) / (timer.times[-1] - timer.times[1])
                                  if len(timer.times) > 2 else None,
                                  "replicas": strategy.num_replicas_in_sync}), flush=True)
