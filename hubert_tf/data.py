"""Training data: audio + transcripts -> a `tf.data.Dataset` of padded batches that `model.fit()` takes.

Audio is read lazily (file paths are decoded when their batch is built), normalised by the processor's
feature extractor example by example, and batched with padding: `input_values` with 0.0,
`attention_mask` with 0, `labels` with -100 (ignored by the CTC loss). Batches of similar lengths can
be formed with `bucket_boundaries` to waste less compute on padding.
"""

from __future__ import annotations

import collections
import os
import threading
import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from .modeling.labels import ctc_frames_needed_for
from .modeling.masking import conv_output_lengths

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3", ".opus")
MAX_AUTO_BUCKETS = 8


def make_dataset(
    audio: Sequence,
    transcripts: Sequence[str] | None,
    processor,
    batch_size: int,
    *,
    sampling_rate: int = 16000,
    shuffle: bool = True,
    seed: int | None = None,
    bucket_boundaries: Sequence[int] | str | None = None,
    drop_remainder: bool = False,
    pad_to_multiple_of: int | None = None,
    label_pad_to_multiple_of: int | None = None,
    config=None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
) -> tf.data.Dataset:
    """Builds a batched, padded, prefetched dataset for `TFHubertForCTC.fit()`.

    Args:
        audio: sequence of examples, each a file path (any format `hubert_tf.processing.load_audio`
            reads; decoded lazily), a 1-D waveform array at `sampling_rate`, an `(array, rate)` pair or
            a `{"array", "sampling_rate"}` dict. Audio is resampled to the processor's rate.
        transcripts: one string per example, or None for an unlabelled dataset (no "labels" key).
        processor: a `HubertProcessor`: its feature extractor normalises each waveform and its
            tokenizer turns each transcript into label ids.
        batch_size: int. Examples per batch.
        sampling_rate: int. Rate in Hz of plain waveform arrays in `audio`. Defaults to 16000.
        shuffle: bool. Shuffle the examples anew at every epoch. Defaults to True.
        seed: optional int. Makes the shuffling reproducible.
        bucket_boundaries: None (one padded batch after another), a sorted list of sample lengths
            (batches are formed within `[b_i, b_i+1)` length buckets, `tf.data`'s
            `bucket_by_sequence_length`), or "auto" (up to 8 boundaries at the quantiles of the audio
            lengths; file lengths are read from their headers).
        drop_remainder: bool. Drop incomplete batches (of each bucket). Defaults to False.
        pad_to_multiple_of: optional int. Round the padded number of samples of every batch up to a
            multiple of this, so fewer distinct shapes are traced (helps `jit_compile=True` and TPUs).
        label_pad_to_multiple_of: optional int. The same for the label length (padding -100).
        config: optional `HubertConfig` (or a model with a `.config`). When given, every transcript's
            ids are checked against `vocab_size` up front (ValueError naming the example), and a
            `RuntimeWarning` is issued once when an example's labels need more frames than its audio
            gives (its CTC loss is inf unless `config.ctc_zero_infinity`).
        num_parallel_calls: parallel audio loaders. Defaults to `tf.data.AUTOTUNE`.

    Returns:
        A `tf.data.Dataset` of dicts: `input_values` float32 [batch, samples], `attention_mask` int32
        [batch, samples] and (with transcripts) `labels` int32 [batch, max_label_length] padded with -100.

    Raises:
        ValueError: different numbers of audio examples and transcripts, an empty `audio`, a bad
            `batch_size` or `bucket_boundaries`, or (with `config`) a label id outside the vocabulary.

    Example:

    >>> import numpy as np
    >>> from hubert_tf.processing import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor
    >>> processor = HubertProcessor(HubertFeatureExtractor(return_attention_mask=True),
    ...                             HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4}))
    >>> waves = [np.random.default_rng(i).standard_normal(800 + 400 * i).astype("float32") for i in range(3)]
    >>> ds = make_dataset(waves, ["AB", "A", "B A"], processor, batch_size=2, shuffle=False)
    >>> batch = next(iter(ds))
    >>> batch["input_values"].shape, batch["labels"].numpy().tolist()
    (TensorShape([2, 1200]), [[3, 4], [3, -100]])
    """
    audio = list(audio)
    if not audio:
        raise ValueError("audio is empty: give at least one example")
    if transcripts is not None:
        transcripts = list(transcripts)
        if len(transcripts) != len(audio):
            raise ValueError(f"got {len(audio)} audio examples but {len(transcripts)} transcripts")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    config = getattr(config, "config", config)
    target_rate = processor.sampling_rate

    labels = None
    if transcripts is not None:
        labels = [np.asarray(processor.tokenizer(text)["input_ids"], np.int32) for text in transcripts]
        warn_if_mostly_unknown(labels, transcripts, processor.tokenizer)
        if config is not None:
            from .modeling.losses import check_labels

            for i, ids in enumerate(labels):
                check_labels(ids, config.vocab_size, name=f"transcript {i} ({transcripts[i]!r}): label ids")

    warn_once = _WarnOnce()

    def load(index):
        index = int(index)
        waveform = _load_waveform(audio[index], sampling_rate, target_rate)
        values = processor(audio=waveform, sampling_rate=target_rate, return_tensors="np")["input_values"][0]
        values = np.asarray(values, np.float32)
        if labels is None:
            return (values,)
        ids = labels[index]
        if config is not None and not config.ctc_zero_infinity:
            frames = int(conv_output_lengths(len(values), config.conv_kernel, config.conv_stride))
            if ctc_frames_needed_for(ids) > frames:
                warn_once(
                    f"example {index}: its {len(ids)} labels need more frames than its {len(values)} samples "
                    f"give ({frames}; labels longer than the output frames), so its CTC loss is inf. Drop or "
                    "shorten such examples, or set config.ctc_zero_infinity=True (warned once per dataset)."
                )
        return values, ids

    output_types = (tf.float32,) if labels is None else (tf.float32, tf.int32)

    def to_example(index):
        outputs = tf.numpy_function(load, [index], output_types, stateful=False)
        values = tf.ensure_shape(outputs[0], [None])
        example = {"input_values": values, "attention_mask": tf.ones_like(values, tf.int32)}
        if labels is not None:
            example["labels"] = tf.ensure_shape(outputs[1], [None])
        return example

    dataset = tf.data.Dataset.range(len(audio))
    if shuffle:
        dataset = dataset.shuffle(len(audio), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(to_example, num_parallel_calls=num_parallel_calls, deterministic=True)

    if isinstance(bucket_boundaries, str):
        if bucket_boundaries != "auto":
            raise ValueError(f"bucket_boundaries must be None, 'auto' or a list of ints, got {bucket_boundaries!r}")
        lengths = [_estimated_length(item, sampling_rate, target_rate) for item in audio]
        bucket_boundaries = auto_bucket_boundaries(lengths, batch_size)
    return _padded_batches(dataset, batch_size, labels is not None, bucket_boundaries, drop_remainder,
                           pad_to_multiple_of, label_pad_to_multiple_of)


def _padded_batches(dataset, batch_size, has_labels, bucket_boundaries, drop_remainder, pad_to_multiple_of,
                    label_pad_to_multiple_of):
    """Examples -> padded (optionally length-bucketed) batches, prefetched; see `make_dataset`."""
    padding_values = {"input_values": 0.0, "attention_mask": 0}
    if has_labels:
        padding_values["labels"] = -100
    if bucket_boundaries:
        bounds = [int(b) for b in bucket_boundaries]
        if any(b <= 0 for b in bounds) or any(b >= c for b, c in zip(bounds, bounds[1:])):
            raise ValueError(f"bucket_boundaries must be positive and strictly increasing, got {bounds}")
        dataset = dataset.bucket_by_sequence_length(
            lambda example: tf.shape(example["input_values"])[0], bounds, [batch_size] * (len(bounds) + 1),
            padding_values=padding_values, drop_remainder=drop_remainder,
        )
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding_values, drop_remainder=drop_remainder)
    if pad_to_multiple_of or (label_pad_to_multiple_of and has_labels):
        multiples = {"input_values": pad_to_multiple_of, "attention_mask": pad_to_multiple_of,
                     "labels": label_pad_to_multiple_of}
        dataset = dataset.map(lambda batch: _pad_to_multiples(batch, multiples, padding_values))
    return dataset.prefetch(tf.data.AUTOTUNE)


def auto_bucket_boundaries(lengths: Sequence[int], batch_size: int, max_buckets: int = MAX_AUTO_BUCKETS) -> list[int]:
    """Bucket boundaries at the quantiles of `lengths`: at most `max_buckets` buckets, each holding about
    two batches or more. Returns [] (no bucketing) for small corpora."""
    lengths = np.asarray(lengths)
    buckets = int(min(max_buckets, len(lengths) // (2 * batch_size)))
    if buckets < 2:
        return []
    quantiles = np.quantile(lengths, np.linspace(0, 1, buckets + 1)[1:-1])
    return sorted({int(q) + 1 for q in quantiles})


def read_librispeech(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Lists a LibriSpeech-style corpus: `<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` files with a
    `<speaker>-<chapter>.trans.txt` per chapter folder, each line `<utterance id> <TRANSCRIPT>`.

    Args:
        root: the corpus folder (e.g. `LibriSpeech/train-clean-100`); searched recursively.

    Returns:
        (audio file paths, transcripts), sorted by utterance id.

    Raises:
        FileNotFoundError: `root` is missing, holds no `*.trans.txt`, or a listed utterance has no audio
            file (.flac, .wav, .ogg, .mp3 or .opus) beside its transcript file.
        ValueError: a transcript line without an utterance id and text.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"corpus folder not found: {root!r}")
    entries = []
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(".trans.txt"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    parts = line.strip().split(maxsplit=1)
                    if len(parts) != 2:
                        raise ValueError(f"{path}:{number}: expected '<utterance id> <transcript>', got {line!r}")
                    utterance, text = parts
                    audio = next((os.path.join(folder, utterance + ext) for ext in AUDIO_EXTENSIONS
                                  if os.path.exists(os.path.join(folder, utterance + ext))), None)
                    if audio is None:
                        raise FileNotFoundError(f"{path}:{number}: no audio file {utterance}.flac (or .wav, ...)")
                    entries.append((utterance, audio, text))
    if not entries:
        raise FileNotFoundError(f"no *.trans.txt transcript files under {root!r}")
    entries.sort()
    return [audio for _, audio, _ in entries], [text for _, _, text in entries]


UNKNOWN_LABELS_WARNING_ABOVE = 0.5  # fraction of label characters mapped to <unk>


def warn_if_mostly_unknown(labels, transcripts, tokenizer) -> float:
    """Warns (a RuntimeWarning, once per call) when most label characters of the corpus map to the
    unknown token: the model would learn to emit `<unk>`. Typically lower-case transcripts against an
    upper-case vocabulary (LibriSpeech-style CTC vocabularies are upper case); the warning says which
    case change fixes it, or names the most frequent unknown characters.

    Args:
        labels: one int array of label ids per transcript.
        transcripts: the transcripts they came from.
        tokenizer: the `HubertCTCTokenizer` that encoded them.

    Returns:
        The fraction of label ids (word delimiters excluded) that are the unknown token's.
    """
    unk, delimiter = tokenizer.unk_token_id, tokenizer.word_delimiter_token_id
    ids = np.concatenate([np.asarray(l).ravel() for l in labels]) if labels else np.zeros(0, np.int32)
    ids = ids[ids != delimiter] if delimiter is not None else ids
    if unk is None or ids.size == 0:
        return 0.0
    fraction = float(np.mean(ids == unk))
    if fraction <= UNKNOWN_LABELS_WARNING_ABOVE:
        return fraction
    vocab = tokenizer.get_vocab()
    unknown = collections.Counter(ch for text in transcripts for ch in text if not ch.isspace() and ch not in vocab)
    total = sum(unknown.values()) or 1
    fixed_by = {fix: sum(n for ch, n in unknown.items() if getattr(ch, fix)() in vocab) / total
                for fix in ("upper", "lower")}
    fix = max(fixed_by, key=fixed_by.get)
    if fixed_by[fix] > 0.5:
        hint = (f"the transcripts are in {'lower' if fix == 'upper' else 'upper'} case and the vocabulary is not: "
                f"pass [t.{fix}() for t in transcripts]")
    else:
        common = ", ".join(repr(ch) for ch, _ in unknown.most_common(5))
        hint = f"the most frequent characters missing from the vocabulary: {common}"
    warnings.warn(f"{fraction:.0%} of the label characters map to {tokenizer.unk_token!r}: {hint} (the model "
                  f"would learn to emit {tokenizer.unk_token!r})", RuntimeWarning, stacklevel=3)
    return fraction


class _WarnOnce:
    """Issues its first message as a RuntimeWarning, ignores the later ones (thread-safe: tf.data calls
    the loader from several threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._done = False

    def __call__(self, message):
        with self._lock:
            if self._done:
                return
            self._done = True
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def _load_waveform(item, sampling_rate, target_rate):
    from .processing import load_audio

    if isinstance(item, (np.ndarray, list)):
        return load_audio((np.asarray(item, np.float32), sampling_rate), target_rate)
    return load_audio(item, target_rate)


def _estimated_length(item, sampling_rate, target_rate) -> int:
    """Samples at `target_rate`, from the file header for paths (no decoding)."""
    if isinstance(item, (str, os.PathLike)):
        import soundfile

        info = soundfile.info(os.fspath(item))
        return int(round(info.frames * target_rate / info.samplerate))
    if isinstance(item, dict):
        return int(round(len(item["array"]) * target_rate / item["sampling_rate"]))
    if isinstance(item, tuple) and len(item) == 2 and np.isscalar(item[1]):
        return int(round(len(item[0]) * target_rate / item[1]))
    if isinstance(item, (np.ndarray, list)):
        return int(round(len(item) * target_rate / sampling_rate))
    return len(_load_waveform(item, sampling_rate, target_rate))


def _pad_to_multiples(batch, multiples, padding_values):
    """Pads the second axis of each batch entry up to a multiple of `multiples[key]` (when set)."""
    batch = dict(batch)
    for key, multiple in multiples.items():
        if multiple and key in batch:
            extra = (-tf.shape(batch[key])[1]) % int(multiple)
            batch[key] = tf.pad(batch[key], [[0, 0], [0, extra]], constant_values=padding_values[key])
    return batch
