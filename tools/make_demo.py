"""Dev-only: trains the tiny demo ASR checkpoint in tests/fixtures/demo/ that the README's Quickstart runs.

The demo model transcribes a *tone alphabet*, not speech (no speech synthesiser is available offline):
every letter of a 12-letter alphabet is a dual-tone burst (one low and one high pitch, like DTMF
telephone keys) with jittered pitch, duration and amplitude; letters are separated by short gaps and
words by longer silences, over background noise of random level. A tiny `TFHubertForCTC` (2 layers,
64-d, layer-norm conv stack as in facebook/hubert-large-ls960-ft) is trained from scratch with
`model.fit()` on random letter strings, then must transcribe held-out sample files exactly: the
sample sentences ("HELLO WORLD", "SEND THE DATA") contain no word that occurs in training.

    python tools/make_demo.py   # writes tests/fixtures/demo/ (2 CPU-minutes; 3-6 min on 2 busy cores)
    python tools/make_demo.py --out /tmp/demo --seed 1

Writes, atomically (a staging directory swapped in only after the checks pass):
    config.json, model.safetensors          `TFHubertForCTC.save_pretrained`
    preprocessor_config.json, vocab.json,   `HubertProcessor.save_pretrained`
    tokenizer_config.json, special_tokens_map.json
    hello_world.wav, send_the_data.wav      16 kHz 16-bit PCM samples, with their texts in SOURCE.json
    SOURCE.json                             how it was made: command, seed, versions, timing, accuracy

Exits non-zero (writing nothing) when a sample is not transcribed exactly or the held-out utterance
accuracy is below 90 %.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "demo")
RATE = 16000

# The tone alphabet: letter i sounds LOW[i // 3] + HIGH[i % 3] Hz (a 4 x 3 grid, like a phone keypad).
LETTERS = "ABDEHLNORSTW"
LOW_HZ = (520.0, 690.0, 910.0, 1200.0)
HIGH_HZ = (1650.0, 2250.0, 3050.0)

# The shipped samples: held out, none of their words is ever a training word.
SAMPLES = {"hello_world.wav": "HELLO WORLD", "send_the_data.wav": "SEND THE DATA"}
HELD_OUT_WORDS = frozenset(" ".join(SAMPLES.values()).split())

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate(LETTERS)}}
MIN_HELD_OUT_ACCURACY = 0.9


# ----------------------------------------------------------------------------------------- audio
def letter_tone(char: str, rng: np.random.Generator) -> np.ndarray:
    """One letter: a Hann-windowed dual tone of the letter's two pitches, each jittered by +-3 %,
    lasting 40-75 ms, with a random balance between the two tones and a random amplitude."""
    index = LETTERS.index(char)
    n = int(rng.integers(640, 1200))
    t = np.arange(n) / RATE
    low, high = (f * rng.uniform(0.97, 1.03) for f in (LOW_HZ[index // 3], HIGH_HZ[index % 3]))
    balance = rng.uniform(0.6, 1.0)
    tone = balance * np.sin(2 * np.pi * low * t + rng.uniform(0, 2 * np.pi)) + \
        (1.6 - balance) * np.sin(2 * np.pi * high * t + rng.uniform(0, 2 * np.pi))
    return rng.uniform(0.3, 1.0) * np.hanning(n) * tone / 1.6


def synthesize(text: str, rng: np.random.Generator) -> np.ndarray:
    """16 kHz float32 audio for `text` (letters of LETTERS and single spaces): letters 2-15 ms apart,
    words 50-120 ms apart, 20-120 ms of lead-in and tail, noise at a random level, a random gain."""
    silence = lambda low_ms, high_ms: np.zeros(int(rng.integers(low_ms * 16, high_ms * 16)))  # noqa: E731
    parts = [silence(20, 120)]
    for w, word in enumerate(text.split(" ")):
        if w:
            parts.append(silence(50, 120))
        for i, char in enumerate(word):
            if i:
                parts.append(silence(2, 15))
            parts.append(letter_tone(char, rng))
    parts.append(silence(20, 120))
    audio = np.concatenate(parts)
    audio += rng.uniform(0.005, 0.05) * rng.standard_normal(audio.size)
    return (rng.uniform(0.3, 0.9) * audio / np.abs(audio).max()).astype(np.float32)


def random_text(rng: np.random.Generator) -> str:
    """1-3 random words of 2-6 letters (doubled letters included), none of them a held-out word."""
    words = []
    while len(words) < rng.integers(1, 4):
        word = "".join(rng.choice(list(LETTERS), size=int(rng.integers(2, 7))))
        if word not in HELD_OUT_WORDS:
            words.append(word)
    return " ".join(words)


def corpus(size: int, rng: np.random.Generator, exclude=frozenset()) -> list[str]:
    """`size` distinct random texts, none in `exclude`."""
    texts: dict[str, None] = {}
    while len(texts) < size:
        text = random_text(rng)
        if text not in exclude:
            texts[text] = None
    return list(texts)


# ----------------------------------------------------------------------------------------- model
def make_config():
    from hubert_tf import HubertConfig

    return HubertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=len(VOCAB), pad_token_id=VOCAB["<pad>"], bos_token_id=VOCAB["<s>"], eos_token_id=VOCAB["</s>"],
        # 160 samples (10 ms) per frame, as the real models' 320 (20 ms): a letter spans 4-7 frames.
        conv_dim=(32, 32, 64), conv_kernel=(10, 5, 8), conv_stride=(5, 4, 8), conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        hidden_dropout=0.05, activation_dropout=0.0, attention_dropout=0.05, feat_proj_dropout=0.0,
        final_dropout=0.05, layerdrop=0.0,
        mask_time_prob=0.05, mask_time_length=3, mask_time_min_masks=0,
        ctc_loss_reduction="mean", ctc_zero_infinity=True,
        architectures=["HubertForCTC"],
    )


def make_processor():
    from hubert_tf import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor

    return HubertProcessor(HubertFeatureExtractor(return_attention_mask=True, do_normalize=True),
                           HubertCTCTokenizer(VOCAB))


def train(texts, audio, *, seed: int, epochs: int, batch_size: int, learning_rate: float):
    """A new TFHubertForCTC trained with `fit()`; returns (model, processor, loss per epoch)."""
    import keras
    import tensorflow as tf

    from hubert_tf import TFHubertForCTC
    from hubert_tf.data import make_dataset

    config, processor = make_config(), make_processor()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = TFHubertForCTC(config)
    steps = epochs * -(-len(texts) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - steps // 10, alpha=0.02,
                                                      warmup_target=learning_rate, warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-3, clipnorm=5.0))
    dataset = make_dataset(audio, texts, processor, batch_size, seed=seed, config=config, bucket_boundaries="auto")
    history = model.fit(dataset, epochs=epochs, verbose=2).history["loss"]
    return model, processor, history


def evaluate(directory, texts, audio):
    """Transcribes `audio` with the saved checkpoint in `directory` (the path the README takes);
    returns (exact-match rate, character error rate, word error rate, wrong (reference, hypothesis) pairs)."""
    from hubert_tf import transcribe
    from hubert_tf.metrics import character_error_rate, word_error_rate

    results = transcribe([(a, RATE) for a in audio], model=directory, batch_size=16)
    hypotheses = [r["text"] for r in results]
    wrong = [(t, h) for t, h in zip(texts, hypotheses) if t != h]
    return (1 - len(wrong) / len(texts), character_error_rate(texts, hypotheses), word_error_rate(texts, hypotheses),
            wrong)


# ----------------------------------------------------------------------------------------- files
def write_wav(path, audio):
    import soundfile

    soundfile.write(path, audio, RATE, subtype="PCM_16")


def read_wav(path):
    from hubert_tf import load_audio

    return load_audio(path, RATE)


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def replace_directory(staging, out):
    """Moves `staging` to `out`, keeping the previous `out` until the new one is in place."""
    old = None
    if os.path.exists(out):
        old = f"{out}.old-{os.getpid()}"
        os.rename(out, old)
    os.rename(staging, out)
    if old:
        shutil.rmtree(old)


def versions() -> dict:
    import keras
    import numpy
    import tensorflow as tf

    import hubert_tf

    return {"hubert_tf": hubert_tf.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: tests/fixtures/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=1000, help="training utterances")
    parser.add_argument("--test-size", type=int, default=200, help="held-out utterances for the accuracy")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    args = parser.parse_args(argv)
    # Everything the run uses is imported now: the tree may be edited while training runs for minutes.
    import hubert_tf.checkpoints.loading  # noqa: F401
    import hubert_tf.data  # noqa: F401
    import hubert_tf.hub  # noqa: F401
    import hubert_tf.pipelines  # noqa: F401

    rng = np.random.default_rng(args.seed)
    train_texts = corpus(args.train_size, rng)
    test_texts = corpus(args.test_size, rng, exclude=set(train_texts))
    train_audio = [synthesize(t, rng) for t in train_texts]
    test_audio = [synthesize(t, rng) for t in test_texts]
    sample_audio = {name: synthesize(text, rng) for name, text in SAMPLES.items()}
    assert not HELD_OUT_WORDS & {w for t in train_texts for w in t.split()}

    start = time.perf_counter()
    model, processor, losses = train(train_texts, train_audio, seed=args.seed, epochs=args.epochs,
                                     batch_size=args.batch_size, learning_rate=args.learning_rate)
    train_seconds = time.perf_counter() - start

    out = os.path.abspath(args.out)
    staging = f"{out}.staging-{os.getpid()}"
    os.makedirs(staging)
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        for name, audio in sample_audio.items():
            write_wav(os.path.join(staging, name), audio)
        # The samples are checked as files, the way the README reads them (16-bit PCM round trip).
        _, _, _, sample_wrong = evaluate(staging, list(SAMPLES.values()),
                                                 [read_wav(os.path.join(staging, name)) for name in SAMPLES])
        test_exact, test_cer, test_wer, test_wrong = evaluate(staging, test_texts, test_audio)
        print(f"trained {len(train_texts)} utterances x {args.epochs} epochs in {train_seconds:.0f} s, "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; held-out: {test_exact:.1%} exact, CER {test_cer:.2%}, "
              f"WER {test_wer:.2%}; "
              f"samples wrong: {sample_wrong}")
        if sample_wrong or test_exact < MIN_HELD_OUT_ACCURACY:
            print(f"not good enough (held-out wrong, first 10: {test_wrong[:10]}); nothing written", file=sys.stderr)
            shutil.rmtree(staging)
            return 1
        source = {
            "what": "tiny TFHubertForCTC trained from scratch on a synthetic tone alphabet (not speech)",
            "command": " ".join(["python tools/make_demo.py", *(argv if argv is not None else sys.argv[1:])]),
            "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "train_utterances": len(train_texts),
            "alphabet": {c: f"{LOW_HZ[i // 3]:g} + {HIGH_HZ[i % 3]:g} Hz" for i, c in enumerate(LETTERS)},
            "samples": SAMPLES, "held_out_words": sorted(HELD_OUT_WORDS),
            "held_out_utterances": len(test_texts), "held_out_exact": round(test_exact, 4),
            "held_out_cer": round(test_cer, 4), "held_out_wer": round(test_wer, 4),
            "held_out_wrong": [" -> ".join(pair) for pair in test_wrong],
            "loss_first_epoch": round(losses[0], 4), "loss_last_epoch": round(losses[-1], 4),
            "train_seconds": round(train_seconds, 1),
            "parameters": int(model.count_params()), "versions": versions(), "cpu_count": os.cpu_count(),
            "sha256": {name: sha256(os.path.join(staging, name)) for name in sorted(os.listdir(staging))},
        }
        with open(os.path.join(staging, "SOURCE.json"), "w", encoding="utf-8") as f:
            json.dump(source, f, indent=2)
            f.write("\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_directory(staging, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
