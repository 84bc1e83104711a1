"""CTC forced alignment: the Viterbi equals a plain reference Viterbi on random log-probabilities (same
path), recovers known boundaries on crafted emissions, stays exact inside a narrow band, names bad input,
and `hubert_tf.align` runs end to end on a tiny model."""

import numpy as np
import pytest

from hubert_tf.decoding import align_text, forced_align, log_softmax, min_frames
from hubert_tf.processing import HubertCTCTokenizer

VOCAB = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "C": 5, "'": 6}


def reference_viterbi(log_probs, tokens, blank):
    """Textbook CTC Viterbi, one scalar at a time (frames x states loops)."""
    frames = log_probs.shape[0]
    labels = [blank]
    for token in tokens:
        labels += [token, blank]
    states = len(labels)
    score = np.full((frames, states), -np.inf)
    back = np.zeros((frames, states), int)
    score[0, 0] = log_probs[0, labels[0]]
    score[0, 1] = log_probs[0, labels[1]]
    for t in range(1, frames):
        for s in range(states):
            options = [(score[t - 1, s], 0)]
            if s >= 1:
                options.append((score[t - 1, s - 1], 1))
            if s >= 2 and labels[s] != blank and labels[s] != labels[s - 2]:
                options.append((score[t - 1, s - 2], 2))
            best, move = options[0]
            for value, m in options[1:]:
                if value > best:
                    best, move = value, m
            score[t, s] = best + log_probs[t, labels[s]]
            back[t, s] = move
    s = states - 1 if score[-1, states - 1] >= score[-1, states - 2] else states - 2
    best = score[-1, s]
    path = []
    for t in range(frames - 1, -1, -1):
        path.append(labels[s])
        s -= back[t, s]
    return np.array(path[::-1]), best


@pytest.mark.parametrize("seed", range(6))
def test_equals_reference_viterbi_on_random_log_probs(seed):
    rng = np.random.default_rng(seed)
    frames, classes = int(rng.integers(12, 40)), 7
    log_probs = log_softmax(rng.standard_normal((frames, classes)) * 3)
    n = int(rng.integers(1, frames // 2))
    tokens = rng.integers(1, classes, n)
    if seed % 2:
        tokens[1::3] = tokens[0::3][: tokens[1::3].size]  # repeats need a blank in between
    if min_frames(tokens) > frames:
        tokens = tokens[: frames // 2]
    expected_path, expected_score = reference_viterbi(log_probs, tokens, blank=0)
    got = forced_align(log_probs, tokens, blank=0, band=None)
    np.testing.assert_array_equal(got.path, expected_path)
    assert got.score == pytest.approx(expected_score, rel=1e-5)
    # The default band holds all states here: the same exact path.
    np.testing.assert_array_equal(forced_align(log_probs, tokens, blank=0).path, expected_path)
    # Every token is read, in order, on consecutive frames.
    assert (got.starts < got.ends).all() and (got.ends[:-1] <= got.starts[1:]).all()


def crafted(spans, frames, classes=7, sharp=0.9, seed=0):
    """Log-probs where `spans` [(token, start, end)] hold `token` and every other frame the blank, with
    noise: the alignment must recover exactly these spans."""
    rng = np.random.default_rng(seed)
    target = np.zeros(frames, int)
    for token, start, end in spans:
        target[start:end] = token
    probs = rng.uniform(0, (1 - sharp) / classes, (frames, classes))
    probs[np.arange(frames), target] = sharp
    return np.log(probs / probs.sum(-1, keepdims=True)), target


def test_recovers_known_boundaries_on_crafted_emissions():
    # "AB CA" with the delimiter (2) between the words, silence around.
    spans = [(3, 5, 9), (4, 12, 14), (2, 14, 16), (5, 20, 26), (3, 27, 30)]
    log_probs, _ = crafted(spans, 36)
    a = forced_align(log_probs, [3, 4, 2, 5, 3], blank=0)
    assert a.starts.tolist() == [s for _, s, _ in spans]
    assert a.ends.tolist() == [e for _, _, e in spans]
    tokenizer = HubertCTCTokenizer(VOCAB)
    out = align_text(log_probs, "ab ca", tokenizer, seconds_per_frame=0.02)
    assert out["text"] == "ab ca"
    assert [w["timestamp"] for w in out["words"]] == [(0.1, 0.28), (0.4, 0.6)]
    assert [c["text"] for c in out["chars"]] == list("abca")
    assert out["chars"][1]["timestamp"] == (0.24, 0.28)
    for item in out["words"] + out["chars"]:
        assert 0.8 < item["confidence"] <= 1.0  # sharp 0.9 posteriors, renormalised


def test_repeated_letters_need_a_blank_and_get_one():
    log_probs, _ = crafted([(3, 1, 3), (3, 4, 6)], 8)
    a = forced_align(log_probs, [3, 3], blank=0)
    assert a.starts.tolist() == [1, 4] and a.ends.tolist() == [3, 6]
    with pytest.raises(ValueError, match="needs at least 3 frames but the audio gives 2"):
        forced_align(log_probs[:2], [3, 3], blank=0)


def test_band_is_exact_for_a_long_recording():
    """2000 tokens over 6000 frames with a 64-state band (memory 6000 x 64 instead of 6000 x 4001): the
    band's path is the crafted (and full Viterbi's) path."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(3, 7, 2000)
    tokens[1:][tokens[1:] == tokens[:-1]] = 1  # avoid repeats (keeps the crafted spans simple)
    spans = [(int(tok), 3 * i, 3 * i + 2) for i, tok in enumerate(tokens)]
    log_probs, target = crafted(spans, 6000, seed=2)
    banded = forced_align(log_probs, tokens, blank=0, band=64)
    np.testing.assert_array_equal(banded.path, target)
    with pytest.raises(ValueError, match="band must be an int >= 4"):
        forced_align(log_probs, tokens, blank=0, band=3)


def test_band_follows_speech_whose_rate_changes():
    """Fast speech, a long pause, slow speech: far from a uniform rate (the diagonal), the band follows
    the best path and gives the full Viterbi's path with a 48-state band over 1601 states."""
    rng = np.random.default_rng(3)
    tokens = rng.integers(3, 7, 800)
    tokens[1:][tokens[1:] == tokens[:-1]] = 1
    spans = [(int(tok), 2 * i, 2 * i + 1) for i, tok in enumerate(tokens[:600])]  # 600 tokens in 1200 frames
    spans += [(int(tok), 4000 + 6 * i, 4000 + 6 * i + 3) for i, tok in enumerate(tokens[600:])]  # pause, slow
    log_probs, target = crafted(spans, 5300, seed=4)
    full = forced_align(log_probs, tokens, blank=0, band=None)
    np.testing.assert_array_equal(full.path, target)
    banded = forced_align(log_probs, tokens, blank=0, band=48)
    np.testing.assert_array_equal(banded.path, full.path)
    assert banded.score == pytest.approx(full.score, rel=1e-6)


def test_errors_name_the_problem():
    tokenizer = HubertCTCTokenizer(VOCAB)
    log_probs = log_softmax(np.zeros((10, 7)))
    with pytest.raises(ValueError, match=r"outside the vocabulary: 'xé'"):
        align_text(log_probs, "abx cé", tokenizer, 0.02)
    with pytest.raises(ValueError, match="needs at least 11 frames but the audio gives 10"):
        align_text(log_probs, "abcab cabca", tokenizer, 0.02)
    with pytest.raises(ValueError, match="empty"):
        align_text(log_probs, "  ", tokenizer, 0.02)
    with pytest.raises(ValueError, match="blank id"):
        forced_align(log_probs, [3, 0], blank=0)
    with pytest.raises(ValueError, match=r"\[9\] are outside the 7 classes"):
        forced_align(log_probs, [3, 9], blank=0)


def test_align_pipeline_on_a_tiny_model(asr_dir):
    """hubert_tf.align end to end: every word gets ordered, in-range spans and a confidence."""
    import hubert_tf

    audio = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    out = hubert_tf.align(audio, "hi there", model=asr_dir)
    assert [w["text"] for w in out["words"]] == ["hi", "there"]
    (a0, a1), (b0, b1) = (w["timestamp"] for w in out["words"])
    assert 0 <= a0 < a1 <= b0 < b1 <= 2.0
    assert all(0 <= c["confidence"] <= 1 for c in out["chars"]) and len(out["chars"]) == 7
    both = hubert_tf.align([audio, audio[:16000]], ["hi there", "hi"], model=asr_dir)
    assert both[0]["words"] == out["words"] and [w["text"] for w in both[1]["words"]] == ["hi"]


@pytest.mark.parametrize("fmt", ["json", "srt", "textgrid"])
def test_align_command(asr_dir, tmp_path, capsys, fmt):
    import json

    import soundfile as sf

    from hubert_tf.cli import main

    wav, text = tmp_path / "a.wav", tmp_path / "a.txt"
    sf.write(wav, np.random.default_rng(3).standard_normal(24000).astype(np.float32) * 0.1, 16000)
    text.write_text("hi there\n")
    assert main(["align", str(wav), str(text), "--model", asr_dir, "--format", fmt, "--quiet"]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        body = json.loads(out)
        assert [w["text"] for w in body["words"]] == ["hi", "there"] and body["file"] == str(wav)
    elif fmt == "srt":
        assert out.startswith("1\n00:00:0") and out.rstrip().endswith("hi there")
    else:
        assert 'name = "words"' in out and 'text = "there"' in out and "xmax = 1.5" in out
    text.write_text("hi thé")
    assert main(["align", str(wav), str(text), "--model", asr_dir, "--quiet"]) == 1
    assert "outside the vocabulary: 'é'" in capsys.readouterr().err
