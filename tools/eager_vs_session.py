"""Dev-only: the same graph run three ways, alternated in one process, to measure what the TF2 eager
function call costs against a TF1 `Session` (see the README's Performance section).

    python tools/eager_vs_session.py                      # whole base model, 10 s, batch 1
    python tools/eager_vs_session.py --part encoder       # the conv feature encoder only

Ways (all float32, intra-op threads 2, inter-op 1 unless --threads):
    eager-variables   `inference_function(model)` / the encoder in a tf.function, as the library runs it
    eager-frozen      the same concrete function with its variables turned into constants, called eagerly
    session-frozen    that frozen graph imported into a `tf.compat.v1.Session` and run there

Prints the median and the fastest call of each and the max |diff| against the first; `ONEDNN_VERBOSE=1`
shows that oneDNN runs the same primitives in all three. No torch, no network.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["model", "encoder"], default="model")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from hubert_tf import HubertConfig, TFHubertModel
    from hubert_tf.modeling._tf_runtime import freeze_concrete_function
    from hubert_tf.modeling.inference import inference_function

    model = TFHubertModel(HubertConfig())
    audio = np.random.default_rng(0).standard_normal((1, int(args.seconds * 16000))).astype(np.float32)
    x = tf.constant(audio)
    if args.part == "model":
        function = inference_function(model)._unmasked
        eager = lambda: function(x)["last_hidden_state"].numpy()
    else:
        encoder = model.hubert.feature_extractor
        function = tf.function(lambda a: encoder(a, training=False), input_signature=[tf.TensorSpec([None, None])])
        eager = lambda: function(x).numpy()
    frozen = freeze_concrete_function(function.get_concrete_function())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.threads, inter_op_parallelism_threads=1)
    session = tf.compat.v1.Session(graph=graph, config=config)
    feed, fetch = frozen.inputs[0].name, frozen.outputs[0].name
    calls = {
        "eager-variables": eager,
        "eager-frozen": lambda: frozen(x)[0].numpy(),
        "session-frozen": lambda: session.run(fetch, {feed: audio}),
    }
    reference = eager()
    for name, call in calls.items():
        print(f"{name:16s} max |diff| {np.abs(call() - reference).max():.2e}")
    times = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    base = np.array(times["eager-variables"])
    for name, seconds in times.items():
        print(f"{name:16s} {1000 * np.median(seconds):7.1f} ms median  {1000 * min(seconds):7.1f} ms fastest  "
              f"eager-variables / this {np.median(base / np.array(seconds)):.3f} (median of rounds)")


if __name__ == "__main__":
    main()
