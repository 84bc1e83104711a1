"""Transcribe, align, embed and classify real recordings of any length: `transcribe`, `align`,
`extract_features`, `classify` (the transformers ASR and audio-classification pipelines' conventions:
`{"raw"|"array", "sampling_rate"}` inputs, dict results). Models given by name are loaded once
(`hubert_tf.pipeline_cache`).

Long audio runs in overlapping chunks (chunked CTC inference): each chunk's outputs are kept only in
its middle, the stride regions on both sides are dropped, and the kept frames tile the whole file, so
memory stays flat whatever the length. Chunk and stride lengths are whole multiples of the model's
frame step (320 samples), so every chunk frame is exactly a frame of the whole file.

Batches are exact: examples padded together give the same outputs as one at a time, group-norm base
models included (their first-layer statistics are taken over the valid samples).
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from .configuration import DEFAULT_ASR_MODEL, DEFAULT_FEATURES_MODEL
from .modeling.inference import inference_function
from .modeling.masking import conv_output_lengths
from .processing.normalize import all_finite, normalize

AUTO_CHUNK_ABOVE_S = 30.0  # chunking turns on by itself for audio longer than this
DEFAULT_CHUNK_S = 30.0


# ----------------------------------------------------------------------------------------- loading
def _resolve(model, processor, model_class, processor_class, processor_required):
    """(model, processor) from hub ids / directories / loaded objects; the processor defaults to the
    model's own files (None when not required and absent). Models and processors given by name are
    loaded once and reused (`hubert_tf.pipeline_cache`), with the graphs compiled for them."""
    from . import pipeline_cache

    source = getattr(model, "name_or_path", None)
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        model = pipeline_cache.load(model_class, source)
    if isinstance(processor, (str, os.PathLike)):
        processor = _load_processor(processor_class, os.fspath(processor))
        if isinstance(processor, Exception):
            raise processor
    if processor is None and source is not None:
        processor = _load_processor(processor_class, source)
        if isinstance(processor, Exception):
            if processor_required:
                raise processor
            processor = None
    if processor is None and processor_required:
        raise ValueError("pass processor= with a loaded model (or pass the model as a hub id or directory)")
    return model, processor


def _load_processor(processor_class, source):
    """The (cached) processor of `source`, or the OSError / ValueError saying why there is none. A local
    directory without processor files is remembered as such; a hub id's failure is not cached (it may be
    the network's)."""
    from . import pipeline_cache

    try:
        result = pipeline_cache.load(processor_class, source, functools.partial(_processor_or_error, processor_class))
    except (OSError, ValueError) as error:
        return error
    # A copy of a cached error: raising the cached one would grow its traceback at every call.
    return copy.copy(result) if isinstance(result, Exception) else result


def _processor_or_error(processor_class, source):
    try:
        return processor_class.from_pretrained(source)
    except (OSError, ValueError) as error:
        if not os.path.isdir(source):
            raise
        return error.with_traceback(None)


def load_model_and_processor(model, processor=None):
    """Returns (TFHubertForCTC, HubertProcessor) from a hub id / directory / loaded model."""
    from .modeling import TFHubertForCTC
    from .processing import HubertProcessor

    return _resolve(model, processor, TFHubertForCTC, HubertProcessor, processor_required=True)


def _feature_extractor(processor):
    return getattr(processor, "feature_extractor", processor)


def _load_inputs(inputs, rate: int, do_normalize: bool, sampling_rate=None) -> tuple[list[np.ndarray], bool]:
    """`inputs` as a list of mono float32 arrays at `rate` (the model's), normalised (in place when the
    array is a fresh copy, never the caller's); says whether one input was given.

    A bare array is at `sampling_rate` (default: the model's rate); `(array, rate)` pairs and
    `{"raw" | "array": ..., "sampling_rate": ...}` dicts carry their own rate and are resampled."""
    from .processing import load_audio
    from .processing.audio import check_sampling_rate

    if sampling_rate is not None:
        sampling_rate = check_sampling_rate(sampling_rate)
    single = not isinstance(inputs, list)
    items = [inputs] if single else inputs
    audios = []
    for i, item in enumerate(items):
        source, array = _audio_source(item, i, sampling_rate or rate)
        audio = load_audio(source, sampling_rate=rate)
        if not all_finite(audio):
            raise ValueError(f"input {i} contains NaN or infinite samples")
        owned = array is None or not np.shares_memory(audio, array)
        audios.append(normalize(audio, inplace=owned) if do_normalize else audio)
    return audios, single


def _audio_source(item, index: int, bare_rate):
    """(what `load_audio` reads, the caller's array or None) for one pipeline input; arrays must be mono."""
    if tf.is_tensor(item):
        item = item.numpy()
    if isinstance(item, dict):
        keys = [k for k in ("raw", "array") if k in item]
        if len(keys) != 1 or "sampling_rate" not in item:
            raise ValueError(f"input {index}: an audio dict needs 'raw' (or 'array') and 'sampling_rate' keys, "
                             f"got {sorted(item)}")
        array, rate = item[keys[0]], item["sampling_rate"]
    elif isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], (str, bytes, os.PathLike)):
        array, rate = item
    elif isinstance(item, np.ndarray):
        array, rate = item, bare_rate
    else:
        return item, None  # a path, file object or bytes: decoded (files are mixed to mono)
    array = array.numpy() if tf.is_tensor(array) else np.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"input {index}: audio arrays must be mono [samples], got shape {array.shape}: pass a "
                         "list of 1-D arrays for a batch, or average the channels first (x.mean(axis=0) for "
                         "[channels, samples])")
    return (array, rate), array


# ----------------------------------------------------------------------------------------- chunking
@dataclass(frozen=True)
class Chunk:
    """A window of samples [start, stop) of one recording, keeping frames [keep_start, keep_stop) of
    its own output, which are frames [start // step + keep_start, ...) of the whole recording."""

    index: int  # which recording
    start: int
    stop: int
    keep_start: int
    keep_stop: int


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)


def plan_chunks(num_samples: int, index: int, config, chunk_length_s: float | None, stride_length_s,
                sampling_rate: int) -> list[Chunk]:
    """Windows covering a recording of `num_samples`; one window when chunking is off or unnecessary."""
    step = config.inputs_to_logits_ratio
    total_frames = int(conv_output_lengths(num_samples, config.conv_kernel, config.conv_stride))
    if chunk_length_s is None:
        chunk_length_s = DEFAULT_CHUNK_S if num_samples > AUTO_CHUNK_ABOVE_S * sampling_rate else 0
    if not _is_real(chunk_length_s) or chunk_length_s < 0:
        raise ValueError(f"chunk_length_s must be a finite number >= 0 (0 = no chunking), got {chunk_length_s!r}")
    chunk = int(round(chunk_length_s * sampling_rate / step)) * step
    if chunk_length_s > 0 and chunk < config.receptive_field:
        raise ValueError(f"chunk_length_s={chunk_length_s} is shorter than the model's receptive field "
                         f"({config.receptive_field / sampling_rate:.3f} s)")
    if chunk <= 0 or num_samples <= chunk:
        return [Chunk(index, 0, num_samples, 0, total_frames)]
    if stride_length_s is None:
        stride_length_s = chunk_length_s / 6
    left_s, right_s = (stride_length_s, stride_length_s) if np.isscalar(stride_length_s) else stride_length_s
    if not (_is_real(left_s) and _is_real(right_s)) or left_s < 0 or right_s < 0:
        raise ValueError(f"stride_length_s must be finite numbers >= 0 (a number or (left, right)), got "
                         f"{stride_length_s!r}")
    left = int(round(left_s * sampling_rate / step)) * step
    right = int(round(right_s * sampling_rate / step)) * step
    if left + right >= chunk or chunk - left - right < config.receptive_field:
        raise ValueError(f"stride_length_s ({left_s}, {right_s}) must leave room in chunk_length_s={chunk_length_s}")
    chunks, start = [], 0
    while True:
        stop = min(start + chunk, num_samples)
        last = stop >= num_samples
        frames = int(conv_output_lengths(stop - start, config.conv_kernel, config.conv_stride))
        keep_start = 0 if start == 0 else left // step
        keep_stop = frames if last else (chunk - right) // step
        keep_stop = min(keep_stop, total_frames - start // step)
        if keep_stop > keep_start:
            chunks.append(Chunk(index, start, stop, keep_start, keep_stop))
        if last:
            return chunks
        start += chunk - left - right
        if start + config.receptive_field > num_samples:  # nothing left that yields a new frame
            return chunks


def _kept_samples(chunk: Chunk, total: int, step: int) -> int:
    """Samples of the recording whose frames `chunk` keeps; over a recording's chunks they add up to
    its length (the first chunk counts from 0, the last up to the end)."""
    begin = chunk.start + chunk.keep_start * step if chunk.start else 0
    end = total if chunk.stop >= total else chunk.start + chunk.keep_stop * step
    return max(end - begin, 0)


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _chunk_batches(audios: list[np.ndarray], config, *, chunk_length_s, stride_length_s, batch_size: int,
                   sampling_rate: int):
    """Yields (chunks, input_values [B, width] float32, attention_mask [B, width] int32): every chunk of
    every recording (`plan_chunks`), longest first, in zero-padded batches of `batch_size`."""
    min_samples = config.receptive_field
    for i, audio in enumerate(audios):
        if audio.size < min_samples:
            raise ValueError(f"input {i} has {audio.size} samples, fewer than the minimum of {min_samples} "
                             f"({min_samples / sampling_rate * 1000:.0f} ms at {sampling_rate} Hz)")
    plans = [plan_chunks(a.size, i, config, chunk_length_s, stride_length_s, sampling_rate) for i, a in enumerate(audios)]
    chunks = [c for plan in plans for c in plan]
    # Longest first keeps padding low; results go to their place whatever the order.
    chunks.sort(key=lambda c: c.stop - c.start, reverse=True)
    for batch in _batches(chunks, max(1, batch_size)):
        width = max(c.stop - c.start for c in batch)
        x = np.zeros((len(batch), width), np.float32)
        mask = np.zeros((len(batch), width), np.int32)
        for row, c in enumerate(batch):
            x[row, : c.stop - c.start] = audios[c.index][c.start:c.stop]
            mask[row, : c.stop - c.start] = 1
        yield batch, x, mask


def _report(progress, batch, audios, step):
    if progress is not None:
        # The samples whose frames this batch kept: overlapping strides are not counted twice, so the
        # total reaches the audio's length exactly when the work is done.
        progress(sum(_kept_samples(c, audios[c.index].size, step) for c in batch))


def run_chunked(audios: list[np.ndarray], function: Callable, config, *, chunk_length_s, stride_length_s,
                batch_size: int, sampling_rate: int, progress=None) -> list[Any]:
    """Runs `function` over every chunk of every recording in padded batches and stitches the kept frames.

    `function(input_values, attention_mask)` returns a [B, F, D] tensor or a tuple of them; the result is
    one array (or a tuple of arrays) [frames, D] per recording.
    """
    totals = [int(conv_output_lengths(a.size, config.conv_kernel, config.conv_stride)) for a in audios]
    results: list[Any] = [None] * len(audios)
    step = config.inputs_to_logits_ratio
    out = None
    for batch, x, mask in _chunk_batches(audios, config, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s,
                                         batch_size=batch_size, sampling_rate=sampling_rate):
        out = function(tf.constant(x), tf.constant(mask))
        outs = out if isinstance(out, tuple) else (out,)
        outs = [o.numpy() for o in outs]
        for row, c in enumerate(batch):
            if results[c.index] is None:
                results[c.index] = [np.zeros((totals[c.index], o.shape[-1]), np.float32) for o in outs]
            at = c.start // step + c.keep_start
            for target, o in zip(results[c.index], outs):
                target[at:at + c.keep_stop - c.keep_start] = o[row, c.keep_start:c.keep_stop]
        _report(progress, batch, audios, step)
    return [r if isinstance(out, tuple) else r[0] for r in results]


# ----------------------------------------------------------------------------------------- public API
def _ctc_logits(model, processor, inputs, chunk_length_s, stride_length_s, batch_size, progress, sampling_rate):
    """(one float32 [frames, vocab] array per input, whether one input was given, seconds per frame):
    the processor's normalisation, then the CTC model with exact padding, chunked for long audio."""
    extractor = _feature_extractor(processor)
    rate = extractor.sampling_rate
    audios, single = _load_inputs(inputs, rate, getattr(extractor, "do_normalize", True), sampling_rate)
    fn = inference_function(model, exact_padding=True)
    logits = run_chunked(audios, lambda x, mask: fn(x, mask)["logits"], model.config, chunk_length_s=chunk_length_s,
                         stride_length_s=stride_length_s, batch_size=batch_size, sampling_rate=rate, progress=progress)
    return logits, single, model.config.inputs_to_logits_ratio / rate


def transcribe(inputs, model=DEFAULT_ASR_MODEL, *, processor=None, chunk_length_s: float | None = None,
               stride_length_s=None, batch_size: int = 1, return_timestamps: str | None = None, progress=None,
               return_confidence: bool = False, decoder=None, beam_width: int | None = None, hotwords=None,
               hotword_weight: float = 10.0, sampling_rate: int | None = None):
    """Speech to text with a CTC model, for recordings of any length.

    Args:
        inputs: one recording or a list of them, each a path, a file object, bytes, a mono float array
            [samples] (at `sampling_rate`), an `(array, sampling_rate)` pair, or a dict
            `{"raw": array, "sampling_rate": sr}` (the transformers pipelines' input) or
            `{"array": ..., "sampling_rate": ...}` (a `datasets` Audio value). Audio at another rate is
            resampled to the model's; files are mixed to mono. Arrays must be 1-D: a 2-D array is refused
            (a list of arrays is a batch; average [channels, samples] audio to mono yourself).
        model: a hub id, a local directory, or a loaded `TFHubertForCTC`. Defaults to
            "facebook/hubert-large-ls960-ft" (downloaded once, then cached).
        processor: a `HubertProcessor` (or its directory); defaults to the model's own.
        chunk_length_s: chunk length for long audio; None = 30 s chunks for audio longer than 30 s,
            0 = never chunk.
        stride_length_s: context dropped on each side of a chunk (a number, or (left, right));
            defaults to chunk_length_s / 6.
        batch_size: chunks run together (results do not depend on it).
        return_timestamps: None, "word" or "char".
        progress: optional callable receiving the number of samples done after each batch.
        return_confidence: bool. Add a "confidence" in [0, 1] to every chunk and to the whole text: the
            geometric mean of the decoded path's frame posteriors over the span (see
            `hubert_tf.decoding.confidence`). Without `return_timestamps` the result is then
            {"text", "confidence"}. Defaults to False.
        decoder: None (greedy, or the processor's LM when it is a `HubertProcessorWithLM`), "greedy", a
            KenLM file / `language_model` directory / model directory with one (beam search + LM, needs
            `pip install "hubert_tf[lm]"`), or a `hubert_tf.decoding.BeamSearchDecoderWithLM`.
        beam_width, hotwords, hotword_weight: LM beam-search options (see
            `BeamSearchDecoderWithLM.decode_beams`); ignored by greedy decoding.
        sampling_rate: rate in Hz of bare arrays in `inputs`; defaults to the model's (16 kHz). Pairs,
            dicts and files carry their own rate.

    Returns:
        A dict per input, as the transformers `automatic-speech-recognition` pipeline: `{"text": str}`,
        plus with `return_timestamps` `"chunks": [{"text", "timestamp": (start_s, end_s)}]` (words or
        characters, seconds) and with `return_confidence` a "confidence" in each chunk and at the top.
        A list of dicts for a list of inputs.

    Model directories and hub ids are loaded once and reused by later calls (see
    `hubert_tf.pipeline_cache`), so calling `transcribe(path, "my_model")` in a loop costs no reload.

    Example:

    >>> transcribe("speech.flac")["text"]  # doctest: +SKIP
    'HELLO WORLD'
    >>> transcribe({"raw": samples_44k, "sampling_rate": 44100}, return_timestamps="word")  # doctest: +SKIP
    {'text': 'HELLO WORLD', 'chunks': [{'text': 'HELLO', 'timestamp': (0.48, 0.8)}, ...]}
    """
    if return_timestamps not in (None, "word", "char"):
        raise ValueError(f"return_timestamps must be None, 'word' or 'char', got {return_timestamps!r}")
    model, processor = load_model_and_processor(model, processor)
    lm = _lm_decoder(decoder, processor)  # before the model runs: a bad LM fails fast
    logits, single, seconds_per_frame = _ctc_logits(model, processor, inputs, chunk_length_s, stride_length_s,
                                                    batch_size, progress, sampling_rate)
    results = []
    for row in logits:
        if lm is not None:
            beam = lm.decode_beams(row, beam_width=beam_width, hotwords=hotwords, hotword_weight=hotword_weight)[0]
            ids = beam.path
        else:
            ids = row.argmax(-1)
        frame_lp = _path_log_probs(row, ids) if return_confidence else None
        results.append(_decode(processor.tokenizer, ids, return_timestamps, seconds_per_frame, frame_lp))
    return results[0] if single else results


def _lm_decoder(decoder, processor):
    """The beam-search decoder `transcribe` uses, or None for greedy decoding."""
    if decoder == "greedy":
        return None
    if decoder is None:
        with_lm = hasattr(processor, "decoder") and hasattr(processor, "kenlm_model_path")
        return processor.decoder if with_lm else None
    if hasattr(decoder, "decode_beams"):
        return decoder
    if isinstance(decoder, (str, os.PathLike)):
        from .processing.processor_with_lm import HubertProcessorWithLM

        return HubertProcessorWithLM.from_processor(processor, decoder).decoder
    raise ValueError(f"decoder must be None, 'greedy', a KenLM path or a BeamSearchDecoderWithLM, got {decoder!r}")


def _path_log_probs(logits, ids):
    from .decoding.confidence import log_softmax, path_log_probs

    return path_log_probs(log_softmax(logits), ids)


def _decode(tokenizer, ids, return_timestamps, seconds_per_frame, frame_log_probs=None):
    """{"text"} (and "chunks") of a CTC path; with `frame_log_probs` (the path's log posteriors) every chunk
    and the whole text get a "confidence"."""
    if return_timestamps is None and frame_log_probs is None:
        return {"text": tokenizer.decode(ids)}
    timestamps = return_timestamps or "word"
    out = tokenizer.decode(ids, output_char_offsets=timestamps == "char",
                           output_word_offsets=timestamps == "word")
    offsets = out.word_offsets if timestamps == "word" else out.char_offsets
    key = "word" if timestamps == "word" else "char"
    chunks = [{"text": o[key], "timestamp": (round(o["start_offset"] * seconds_per_frame, 3),
                                             round(o["end_offset"] * seconds_per_frame, 3))} for o in offsets]
    result = {"text": out.text, "chunks": chunks}
    if frame_log_probs is not None:
        from .decoding.confidence import add_confidence, span_confidence

        add_confidence(offsets, frame_log_probs)
        for chunk, offset in zip(chunks, offsets):
            chunk["confidence"] = offset["confidence"]
        result["confidence"] = round(float(span_confidence(frame_log_probs, [0], [len(frame_log_probs)])[0]), 4)
        if return_timestamps is None:
            del result["chunks"]
    return result


def align(inputs, transcript, model=DEFAULT_ASR_MODEL, *, processor=None, chunk_length_s: float | None = None,
          stride_length_s=None, batch_size: int = 1, band: int | None = None, progress=None,
          sampling_rate: int | None = None):
    """CTC forced alignment: when each word and character of a known transcript is said.

    The model's log-probabilities (chunked for long audio, so memory stays flat) are aligned to the
    transcript by CTC Viterbi (`hubert_tf.decoding.forced_align`, banded for long audio).

    Args:
        inputs: as `transcribe` (one input or a list).
        transcript: str, or a list of str (one per input). Case is matched to the vocabulary.
        model, processor, chunk_length_s, stride_length_s, batch_size, progress, sampling_rate: as
            `transcribe`.
        band: CTC states kept per frame (None = 2048, see `forced_align`).

    Returns:
        {"text", "score", "words": [{"text", "timestamp": (start_s, end_s), "confidence"}], "chars": [...]}
        (a list of those for a list of inputs).

    Raises:
        ValueError: characters outside the vocabulary (named), or a transcript that needs more frames
            than the audio gives.

    Example:

    >>> out = align("speech.flac", "hello world")  # doctest: +SKIP
    >>> out["words"][0]
    {'text': 'hello', 'timestamp': (0.48, 0.8), 'confidence': 0.97}
    """
    from .decoding.alignment import DEFAULT_BAND, align_text, transcript_to_ids

    model, processor = load_model_and_processor(model, processor)
    single = not isinstance(inputs, list)
    transcripts = [transcript] if isinstance(transcript, str) else list(transcript)
    if len(transcripts) != (1 if single else len(inputs)):
        raise ValueError(f"got {1 if single else len(inputs)} input(s) but {len(transcripts)} transcript(s)")
    for text in transcripts:  # vocabulary errors before the model runs
        transcript_to_ids(text, processor.tokenizer)
    logits, _, seconds_per_frame = _ctc_logits(model, processor, inputs, chunk_length_s, stride_length_s,
                                               batch_size, progress, sampling_rate)
    results = [align_text(row, text, processor.tokenizer, seconds_per_frame, band=band or DEFAULT_BAND)
               for row, text in zip(logits, transcripts)]
    return results[0] if single else results


def extract_features(inputs, model=DEFAULT_FEATURES_MODEL, *, processor=None, layer=None,
                     batch_size: int = 1, chunk_length_s: float | None = None, stride_length_s=None, progress=None,
                     sampling_rate: int | None = None):
    """Hidden states of chosen layers for recordings of any length.

    Args:
        inputs: as `transcribe`.
        model: hub id, directory, or a loaded HuBERT model (any class with a `.hubert` body).
        processor: a feature extractor or processor (or its directory); defaults to the model's own,
            or plain zero-mean unit-variance normalisation when the model has none.
        layer: None (the last hidden state), an int (index into `hidden_states`: 0 = encoder input,
            num_hidden_layers = last; negative counts from the end) or a list of ints.
        batch_size, chunk_length_s, stride_length_s, progress, sampling_rate: as `transcribe`.

    Returns:
        For each input, an array [frames, hidden_size] (int/None layer) or a dict {layer: array} (list).
        A single input gives a single result.
    """
    from .modeling import TFHubertModel
    from .processing import HubertFeatureExtractor

    model, processor = _resolve(model, processor, TFHubertModel, HubertFeatureExtractor, processor_required=False)
    fe = _feature_extractor(processor) if processor is not None else None
    rate = getattr(fe, "sampling_rate", 16000)
    n = model.config.num_hidden_layers + 1
    layers = [layer] if not isinstance(layer, (list, tuple)) else list(layer)
    indices = []
    for l in layers:
        i = n - 1 if l is None else int(l)
        if not -n <= i < n:
            raise ValueError(f"layer {l} is out of range: the model has hidden_states 0..{n - 1}")
        indices.append(i % n)
    audios, single = _load_inputs(inputs, rate, getattr(fe, "do_normalize", True), sampling_rate)
    wanted = tuple(sorted(set(indices)))
    # The body alone, stopping after the highest requested layer and keeping only those: no head, no
    # work and no memory for layers nobody asked for.
    fn = inference_function(model.hubert, exact_padding=True, output_layers=wanted)
    hidden = run_chunked(audios, lambda x, mask: fn(x, mask)["hidden_states"], model.config,
                         chunk_length_s=chunk_length_s, stride_length_s=stride_length_s, batch_size=batch_size,
                         sampling_rate=rate, progress=progress)
    results = []
    for states in hidden:
        by_index = dict(zip(wanted, states))
        if isinstance(layer, (list, tuple)):
            results.append({l: by_index[i] for l, i in zip(layers, indices)})
        else:
            results.append(by_index[indices[0]])
    return results[0] if single else results


def classify(inputs, model, *, processor=None, top_k: int = 5, chunk_length_s: float | None = None,
             stride_length_s=None, sampling_rate: int | None = None, batch_size: int = 1, progress=None):
    """Audio classification (keyword spotting, emotion, language id, ...): the transformers
    `audio-classification` pipeline for `TFHubertForSequenceClassification` and its wav2vec2 sibling.

    Long audio runs in chunks whose logits are averaged, each weighted by the frames it contributes
    (the head is a mean over frames followed by linear layers, so this average is what the model gives
    the whole recording up to the chunk edges' context), then turned into probabilities.

    Args:
        inputs: one recording or a list of them, in any form `transcribe` takes.
        model: a hub id, a local directory, or a loaded sequence-classification model.
        processor: a `HubertFeatureExtractor` (or processor, or its directory); defaults to the model's
            own, or zero-mean unit-variance normalisation when the model ships none.
        top_k: int. Labels returned per input (at most the model's `num_labels`). Defaults to 5.
        chunk_length_s: as `transcribe` (None = 30 s chunks above 30 s, 0 = never chunk).
        stride_length_s: overlap on each side of a chunk (a number or (left, right)); defaults to 0:
            chunks side by side (the overlap of `transcribe` would count those samples twice).
        sampling_rate: rate in Hz of bare arrays in `inputs`; defaults to the model's.
        batch_size: chunks run together (results do not depend on it).
        progress: optional callable receiving the number of samples done after each batch.

    Returns:
        For one input, a list of `{"label": str, "score": float}` (labels from `config.id2label`,
        scores are softmax probabilities), best first; a list of such lists for a list of inputs.

    Raises:
        ValueError: the model has no classification head or no `id2label`, or a bad `top_k`.

    Example:

    >>> classify("yes.wav", "superb/hubert-base-superb-ks", top_k=2)  # doctest: +SKIP
    [{'label': 'yes', 'score': 0.9977}, {'label': 'no', 'score': 0.0009}]
    """
    from .modeling import TFHubertForSequenceClassification
    from .processing import HubertFeatureExtractor

    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    model, processor = _resolve(model, processor, TFHubertForSequenceClassification, HubertFeatureExtractor,
                                processor_required=False)
    id2label = getattr(model.config, "id2label", None)
    if not hasattr(model, "classifier") or not id2label:
        raise ValueError(f"{type(model).__name__} is not an audio-classification model (it needs a "
                         "sequence-classification head and config.id2label)")
    fe = _feature_extractor(processor) if processor is not None else None
    rate = getattr(fe, "sampling_rate", 16000)
    audios, single = _load_inputs(inputs, rate, getattr(fe, "do_normalize", True), sampling_rate)
    config = model.config
    fn = inference_function(model, exact_padding=True)
    sums = [np.zeros(config.num_labels, np.float64) for _ in audios]
    weights = [0] * len(audios)
    for batch, x, mask in _chunk_batches(audios, config, chunk_length_s=chunk_length_s,
                                         stride_length_s=0 if stride_length_s is None else stride_length_s,
                                         batch_size=batch_size, sampling_rate=rate):
        logits = fn(tf.constant(x), tf.constant(mask))["logits"].numpy()
        for row, c in enumerate(batch):
            frames = c.keep_stop - c.keep_start
            sums[c.index] += frames * logits[row].astype(np.float64)
            weights[c.index] += frames
        _report(progress, batch, audios, config.inputs_to_logits_ratio)
    results = [_top_labels(total / weight, id2label, top_k) for total, weight in zip(sums, weights)]
    return results[0] if single else results


def _top_labels(logits, id2label, top_k: int) -> list[dict]:
    """The `top_k` {"label", "score"} of one row of logits, by decreasing softmax probability."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [{"label": str(id2label.get(int(i), id2label.get(str(int(i)), f"LABEL_{int(i)}"))),
             "score": float(probs[i])} for i in order]
