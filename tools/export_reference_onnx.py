"""Dev script: which torch.onnx exporter gives the fastest onnxruntime model of the transformers
reference? (`hubert_tf.bench_reference.AUTO_TORCH_EXPORTERS` is ordered by this.)

Exports one random-weight model (same weights for all) with each exporter, checks every ONNX model
against hubert_tf, and times them alternated in onnxruntime (`hubert_tf.bench_reference.ort_session`).
Needs torch, transformers (and onnxscript for torch-dynamo) next to TensorFlow and onnxruntime:

    /work/venv-onnx/bin/python tools/export_reference_onnx.py --model base --seconds 10 --threads 2 \
        --exporters torch-legacy torch-dynamo tf2onnx --keep /tmp/onnx-models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="base")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--padded", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--exporters", nargs="+", default=["torch-legacy", "torch-dynamo"])
    p.add_argument("--keep", help="write the ONNX models into this directory (else a temporary one)")
    args = p.parse_args(argv)

    from hubert_tf import benchmark as bench

    bench.configure_threads(args.threads)
    import numpy as np
    import tensorflow as tf
    import torch

    from hubert_tf.modeling import TFHubertModel
    from hubert_tf.modeling.inference import inference_function

    torch.set_num_threads(args.threads)
    model = TFHubertModel(bench.resolve_config(args.model))
    audio, mask, lengths = bench.make_inputs(args.batch_size, int(args.seconds * bench.SAMPLING_RATE), args.padded)
    ours = inference_function(model, jit_compile=False)(tf.constant(audio), None if mask is None else tf.constant(mask))
    ours = ours["last_hidden_state"].numpy()
    valid = np.ones(ours.shape[:2], bool) if mask is None else bench._frame_mask(model, lengths, ours.shape[1])
    directory = args.keep or tempfile.mkdtemp(prefix="hubert_tf_onnx_")
    os.makedirs(directory, exist_ok=True)
    calls, results = {}, {}
    for exporter in args.exporters:
        try:
            path, info = bench.make_onnx_model(model, directory, mask is not None, exporter,
                                               log=lambda m: print(m, file=sys.stderr))
        except Exception as error:  # noqa: BLE001 - report the exporter's failure, go on with the others
            results[exporter] = {"error": f"{type(error).__name__}: {error}"[:500]}
            continue
        session = bench.ort_session(path, args.threads)
        feeds = bench.ort_feeds(session, audio, mask)
        out = session.run(None, feeds)[0]
        results[exporter] = {**info, "max_abs_diff_vs_hubert_tf": bench._max_diff(ours, out, valid),
                             "bytes": os.path.getsize(path)}
        calls[exporter] = (lambda s=session, f=feeds: s.run(None, f))
        calls[exporter]()
    times = bench.time_alternating(calls, args.repeats, pause=0.05)
    for name, seconds in times.items():
        results[name].update(bench.summarize(seconds))
    print(json.dumps({"load_average": list(os.getloadavg()), "threads": args.threads, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
