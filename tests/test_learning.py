"""Proof of learning: a tiny randomly initialised TFHubertForCTC, fine-tuned with plain `fit()` on a
synthetic corpus (each letter a tone of its own pitch, words separated by silence), afterwards
transcribes >= 90% of its training utterances exactly with greedy CTC decoding."""

import time
import zlib

import keras
import numpy as np

from hubert_tf import HubertConfig, TFHubertForCTC
from hubert_tf.data import make_dataset
from hubert_tf.processing import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor

LETTERS = "ABCDEFGH"
SEGMENT = 480  # samples per letter on average (30 ms = 6 frames of the tiny model)
EPOCHS, BATCH = 80, 8


def synthesize(text):
    """Deterministic audio for `text`: per letter a Hann-windowed tone (+ octave) of the letter's pitch
    with a jittered length, amplitude and pitch; a space is a short silence; light noise throughout."""
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    parts = []
    for char in text:
        n = int(rng.integers(SEGMENT * 5 // 6, SEGMENT * 4 // 3))
        if char == " ":
            parts.append(np.zeros(n // 2))
            continue
        t = np.arange(n) / 16000
        pitch = 400 * 1.35 ** LETTERS.index(char) * rng.uniform(0.97, 1.03)
        tone = np.sin(2 * np.pi * pitch * t) + 0.3 * np.sin(4 * np.pi * pitch * t)
        parts.append(rng.uniform(0.5, 1.0) * np.hanning(n) * tone)
    audio = np.concatenate(parts)
    return (audio + 0.02 * rng.standard_normal(len(audio))).astype("float32")


def corpus(size=64, seed=0):
    """Unique transcripts of one or two words of 2-4 letters without doubled letters."""
    rng = np.random.default_rng(seed)

    def word():
        letters = [rng.choice(list(LETTERS))]
        while len(letters) < rng.integers(2, 5):
            letter = rng.choice(list(LETTERS))
            if letter != letters[-1]:
                letters.append(letter)
        return "".join(letters)

    return sorted({" ".join(word() for _ in range(rng.integers(1, 3))) for _ in range(size)})


def greedy_transcripts(model, dataset, processor):
    texts = []
    for batch in dataset:
        logits = model(batch, training=False).logits.numpy()
        frames = model.hubert.frame_lengths(batch["attention_mask"].numpy().sum(axis=1))
        texts += [processor.decode(row[:n].argmax(axis=-1)) for row, n in zip(logits, frames)]
    return texts


def test_fine_tuning_learns_a_synthetic_corpus():
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(LETTERS)}}
    processor = HubertProcessor(HubertFeatureExtractor(return_attention_mask=True), HubertCTCTokenizer(vocab))
    texts = corpus()
    audio = [synthesize(text) for text in texts]
    config = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=len(vocab),
        conv_dim=(32, 32, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05, mask_time_length=2, mask_time_min_masks=0,
        ctc_loss_reduction="mean", ctc_zero_infinity=True,
    )
    keras.utils.set_random_seed(0)
    model = TFHubertForCTC(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    dataset = make_dataset(audio, texts, processor, BATCH, seed=0, config=config)

    start = time.perf_counter()
    losses = model.fit(dataset, epochs=EPOCHS, verbose=0).history["loss"]
    seconds = time.perf_counter() - start
    steps = EPOCHS * -(-len(texts) // BATCH)

    hypotheses = greedy_transcripts(model, make_dataset(audio, None, processor, BATCH, shuffle=False), processor)
    exact = np.mean([h == t for h, t in zip(hypotheses, texts)])
    print(f"{len(texts)} utterances, {steps} steps in {seconds:.1f}s ({steps / seconds:.1f} steps/s), "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, exact transcripts {exact:.1%}")
    assert losses[-1] < 0.1 * losses[0]
    wrong = [(t, h) for h, t in zip(hypotheses, texts) if h != t]
    assert exact >= 0.9, f"only {exact:.1%} exact; wrong (reference, hypothesis): {wrong}"
