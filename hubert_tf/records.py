"""Corpus-scale training data: TFRecord shards of audio (int16 PCM or FLAC) with label ids and lengths,
written one example at a time and read back through `tf.data` (interleaved shards, shuffling buffer,
length buckets, per-worker sharding): the corpus is never in memory.

    >>> paths, texts = read_librispeech("LibriSpeech/train-clean-100")                     # doctest: +SKIP
    >>> write_tfrecord_shards(paths, "records", transcripts=texts, processor=processor,
    ...                       num_shards=64, prefix="train")                              # doctest: +SKIP
    >>> train = tfrecord_dataset("records/train-*.tfrecord", batch_size=8,
    ...                          bucket_boundaries=[32000, 64000, 128000, 256000])        # doctest: +SKIP
    >>> model.fit(train, epochs=3)                                                        # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from .data import _load_waveform, _padded_batches
from .files import atomic_files

AUDIO_FORMATS = ("int16", "flac")
_FEATURES = {
    "audio": tf.io.FixedLenFeature([], tf.string),
    "encoding": tf.io.FixedLenFeature([], tf.string),
    "length": tf.io.FixedLenFeature([], tf.int64),
    "labels": tf.io.VarLenFeature(tf.int64),
}


def _encode(waveform: np.ndarray, audio_format: str, rate: int) -> bytes:
    pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype("<i2")
    if audio_format == "int16":
        return pcm.tobytes()
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def write_tfrecord_shards(audio: Sequence, out_dir, *, transcripts: Sequence[str] | None = None,
                          labels: Sequence[Sequence[int]] | None = None, processor=None, num_shards: int = 1,
                          prefix: str = "data", audio_format: str = "int16", sampling_rate: int = 16000) -> list[str]:
    """Writes `{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord` files, example `j` in shard `j % num_shards`.

    Each record holds `audio` (16-bit PCM, raw little-endian or FLAC; samples outside [-1, 1] are
    clipped), `encoding`, `length` (samples)
    and `labels` (int64 ids: the processor's tokenisation of the transcript, or the given unit labels).

    Args:
        audio: paths or waveforms (anything `make_dataset` takes), decoded one at a time.
        out_dir: created if needed. The shards appear together when all are written (atomically).
        transcripts: optional strings, tokenised with `processor.tokenizer`.
        labels: optional int sequences instead (e.g. k-means units per frame).
        processor: a HubertProcessor (needed for `transcripts`; its sampling rate is the target rate).
        num_shards: int >= 1. Several per worker let `tf.data` read files in parallel.
        prefix: file name prefix, e.g. "train".
        audio_format: "int16" (decoded in the graph, fastest) or "flac" (about half the size; decoded
            with soundfile).
        sampling_rate: rate of plain waveform arrays in `audio`.

    Returns:
        The shard paths.

    Raises:
        ValueError: bad `num_shards` / `audio_format`, both or mismatched `transcripts` / `labels`, or
            `transcripts` without a processor.
    """
    audio = list(audio)
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if transcripts is not None and labels is not None:
        raise ValueError("give transcripts or labels, not both")
    given = transcripts if transcripts is not None else labels
    if given is not None and len(given) != len(audio):
        raise ValueError(f"got {len(audio)} audio examples but {len(given)} transcripts/labels")
    if transcripts is not None and processor is None:
        raise ValueError("transcripts need a processor (its tokenizer gives the label ids)")
    rate = processor.sampling_rate if processor is not None else 16000
    os.makedirs(out_dir, exist_ok=True)
    names = [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    with atomic_files(out_dir) as files:
        writers = [tf.io.TFRecordWriter(files.path(name)) for name in names]
        try:
            for j, item in enumerate(audio):
                waveform = _load_waveform(item, sampling_rate, rate)
                if transcripts is not None:
                    ids = processor.tokenizer(transcripts[j])["input_ids"]
                else:
                    ids = [] if labels is None else labels[j]
                feature = {
                    "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_encode(waveform, audio_format, rate)])),
                    "encoding": tf.train.Feature(bytes_list=tf.train.BytesList(value=[audio_format.encode()])),
                    "length": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(waveform)])),
                    "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(i) for i in ids])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writers[j % num_shards].write(example.SerializeToString())
        finally:
            for writer in writers:
                writer.close()
    return [os.path.join(os.fspath(out_dir), name) for name in names]


def _decode_flac(data):
    import soundfile

    pcm, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    return pcm.astype(np.int16)


def tfrecord_dataset(files, batch_size: int, *, with_labels: bool = True, shuffle: bool = True,
                     seed: int | None = None, shuffle_buffer: int = 1024, cycle_length: int = 4,
                     do_normalize: bool = True, bucket_boundaries: Sequence[int] | None = None,
                     drop_remainder: bool = False, pad_to_multiple_of: int | None = None,
                     label_pad_to_multiple_of: int | None = None) -> tf.data.Dataset:
    """Batches for `fit()` / `fit_distributed` from shards written by `write_tfrecord_shards`.

    Args:
        files: a glob pattern or a list of shard paths.
        batch_size: examples per (global) batch.
        with_labels: include "labels" (padded with -100). Defaults to True.
        shuffle: shuffle the shard order and examples (a `shuffle_buffer`-example buffer) every epoch.
        seed: makes the shuffling reproducible.
        cycle_length: shards read at once (interleaved).
        do_normalize: zero-mean unit-variance per example, as `HubertFeatureExtractor(do_normalize=True)`
            (set it as your processor's `feature_extractor.do_normalize`).
        bucket_boundaries, drop_remainder, pad_to_multiple_of, label_pad_to_multiple_of: as `make_dataset`
            ("auto" is not available: lengths are not known without a pass over the shards).

    Per-worker sharding: under `MultiWorkerMirroredStrategy` tf.data shards automatically; set
    `AutoShardPolicy.FILE` in the dataset's options (with at least as many shards as workers) to have
    each worker read only its files.

    Returns:
        A dataset of dicts `input_values` float32 [batch, samples], `attention_mask` int32 and `labels`.

    Raises:
        ValueError: no file matches `files`, a bad `batch_size`, or `bucket_boundaries="auto"`.
    """
    paths = sorted(tf.io.gfile.glob(files)) if isinstance(files, (str, os.PathLike)) else [os.fspath(f) for f in files]
    if not paths:
        raise ValueError(f"no TFRecord shard matches {files!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(bucket_boundaries, str):
        raise ValueError("bucket_boundaries='auto' needs the lengths up front: give a list of sample lengths")
    from .processing.normalize import normalize_audio

    def parse(record):
        example = tf.io.parse_single_example(record, _FEATURES)
        pcm = tf.cond(
            tf.equal(example["encoding"], "int16"),
            lambda: tf.io.decode_raw(example["audio"], tf.int16, little_endian=True),
            lambda: tf.ensure_shape(tf.numpy_function(_decode_flac, [example["audio"]], tf.int16, stateful=False), [None]),
        )
        values = tf.cast(pcm, tf.float32) / 32767.0
        values = tf.ensure_shape(normalize_audio(values[None], do_normalize=do_normalize)[0], [None])
        out = {"input_values": values, "attention_mask": tf.ones_like(values, tf.int32)}
        if with_labels:
            out["labels"] = tf.cast(tf.sparse.to_dense(example["labels"]), tf.int32)
        return out

    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(paths)),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return _padded_batches(dataset, batch_size, with_labels, bucket_boundaries, drop_remainder, pad_to_multiple_of,
                           label_pad_to_multiple_of)
