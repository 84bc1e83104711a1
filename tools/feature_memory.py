"""Peak memory of `extract_features(..., layer=L)` on a long file (dev script; the README quotes it).

    python tools/feature_memory.py --minutes 60 --layer 9            # base architecture, random weights
    python tools/feature_memory.py --model path/to/checkpoint --minutes 20

Writes a WAV of noise, warms the model up on one minute (same chunk shapes), then reports how much the
peak RSS grew while extracting one layer of the whole file, next to the audio's float32 size and the
returned array's size. Random weights have the speed and memory of real ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np
import soundfile as sf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: the base architecture, random weights)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)

    from hubert_tf import HubertConfig, TFHubertModel, extract_features

    model = TFHubertModel.from_pretrained(args.model) if args.model else TFHubertModel(HubertConfig())
    rate = 16000
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        long_path, warm_path = os.path.join(tmp, "long.wav"), os.path.join(tmp, "warm.wav")
        with sf.SoundFile(long_path, "w", rate, 1, "PCM_16") as f:  # written in blocks: no big array here
            for _ in range(int(args.minutes)):
                f.write((rng.standard_normal(rate * 60) * 3000).astype(np.int16))
        sf.write(warm_path, (rng.standard_normal(rate * 61) * 3000).astype(np.int16), rate)
        extract_features(warm_path, model, layer=args.layer, batch_size=args.batch_size)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        features = extract_features(long_path, model, layer=args.layer, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    audio = int(args.minutes) * 60 * rate * 4
    mib = 2 ** 20
    print(f"{int(args.minutes)} min, layer {args.layer} of {model.config.num_hidden_layers}: "
          f"features {features.shape} ({features.nbytes / mib:.0f} MiB), audio {audio / mib:.0f} MiB float32")
    print(f"peak RSS before {before / mib:.0f} MiB, after {after / mib:.0f} MiB, grew {(after - before) / mib:.0f} MiB "
          f"= audio + {(after - before - audio) / max(features.nbytes, 1):.2f} x returned; {seconds:.0f} s "
          f"({int(args.minutes) * 60 / seconds:.1f}x real time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
