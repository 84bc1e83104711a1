"""notebooks/fine_tune_ctc.ipynb runs end to end (no jupyter: its code cells are executed in-process) on a
tiny generated LibriSpeech-style corpus and a tiny local model, so the notebook cannot rot."""

import math
import os

import numpy as np
import soundfile

from notebooks import run_notebook

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "fine_tune_ctc.ipynb")
WORDS = ["A", "CAT", "SAT", "ON", "THE", "MAT", "DOG", "RAN"]


def write_corpus(root, speakers=(19, 26), chapters=(198,), utterances=4):
    """LibriSpeech layout: <speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + <speaker>-<chapter>.trans.txt."""
    rng = np.random.default_rng(0)
    for speaker in speakers:
        for chapter in chapters:
            folder = os.path.join(root, str(speaker), str(chapter))
            os.makedirs(folder)
            lines = []
            for utt in range(utterances):
                name = f"{speaker}-{chapter}-{utt:04d}"
                seconds = rng.uniform(0.6, 1.2)
                t = np.arange(int(seconds * 16000)) / 16000
                audio = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.01 * rng.standard_normal(len(t))
                soundfile.write(os.path.join(folder, name + ".flac"), audio, 16000)
                lines.append(f"{name} {' '.join(rng.choice(WORDS, rng.integers(1, 4)))}")
            with open(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")


def test_fine_tune_notebook(asr_dir, tmp_path):
    corpus = tmp_path / "LibriSpeech" / "train-tiny"
    write_corpus(str(corpus))
    output = tmp_path / "finetuned"
    ns = run_notebook(NOTEBOOK, {
        "DATA_DIR": str(corpus), "MODEL": asr_dir, "OUTPUT_DIR": str(output), "EPOCHS": 2, "BATCH_SIZE": 2,
        "EVAL_FRACTION": 0.25, "LEARNING_RATE": 1e-3,
    })
    assert len(ns["train_paths"]) == 6 and len(ns["eval_paths"]) == 2
    losses = ns["history"].history
    assert len(losses["loss"]) == 2 and all(math.isfinite(v) for v in losses["loss"] + losses["val_loss"])
    assert isinstance(ns["wer_before"], float) and isinstance(ns["wer_after"], float)
    assert {"config.json", "model.safetensors", "vocab.json", "preprocessor_config.json"} <= set(os.listdir(output))
    assert ns["difference"] < 1e-5
