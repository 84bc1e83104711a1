"""`hubert-tf`: transcribe, extract features, export, inspect and benchmark HuBERT models.

Every command takes a hub id or a local directory. Errors print one line and exit non-zero; `--debug`
shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from . import __version__
from .configuration import DEFAULT_ASR_MODEL, DEFAULT_FEATURES_MODEL

# Nothing above imports TensorFlow, numpy or tqdm: `hubert-tf --help` and `--version` stay fast. Every
# command imports what it needs when it runs.

EXIT_ERROR = 1
EXIT_USAGE = 2


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class SampleProgress:
    """The `progress(n)` callable the pipelines call after each batch with the samples it processed,
    counting into a tqdm bar on stderr.

    Overlapping chunks make the pipelines process a few more samples than the recordings hold: the
    bar's total then grows with the count, so it ends at exactly 100 % and never passes it.
    """

    def __init__(self, bar):
        self.bar, self.done = bar, 0

    def __call__(self, amount: int) -> None:
        amount = int(amount)
        self.done += amount
        if self.done > self.bar.total:
            self.bar.total = self.done
        self.bar.update(amount)


@contextlib.contextmanager
def progress_bar(total: int, label: str, enabled: bool = True):
    """A tqdm progress bar on stderr counting audio samples; yields its `SampleProgress`.

    The bar is shown only on a terminal and when `enabled` (not `--quiet`); the count is kept either way.

    Args:
        total: int. Samples expected (the loaded recordings' total).
        label: str. Text before the bar.
        enabled: bool. False hides the bar. Defaults to True.

    Example:

    >>> with progress_bar(32000, "transcribing", enabled=False) as progress:
    ...     progress(16000)
    ...     progress(20000)
    >>> progress.done, progress.bar.total
    (36000, 36000)
    """
    from tqdm import tqdm  # imported here: `hubert-tf --help` needs no tqdm

    bar = tqdm(total=max(int(total), 1), desc=label, unit="sample", unit_scale=True, file=sys.stderr,
               disable=not (enabled and _stderr_is_terminal()), dynamic_ncols=True)
    try:
        yield SampleProgress(bar)
    finally:
        bar.close()


def _audio_files(paths):
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a directory, expected an audio file")
    return paths


def _load_audio_files(paths, rate):
    from .processing import load_audio

    return [load_audio(p, sampling_rate=rate) for p in _audio_files(paths)]


# ----------------------------------------------------------------------------------------- formats
def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitle_cues(chunks, max_words: int = 10, max_seconds: float = 5.0):
    """Groups word chunks into subtitle cues of at most `max_words` words / `max_seconds`."""
    cues, current = [], []
    for chunk in chunks:
        if current and (len(current) >= max_words or chunk["timestamp"][1] - current[0]["timestamp"][0] > max_seconds):
            cues.append(current)
            current = []
        current.append(chunk)
    if current:
        cues.append(current)
    return [(c[0]["timestamp"][0], c[-1]["timestamp"][1], " ".join(w["text"] for w in c)) for c in cues]


def format_transcript(result, fmt: str, path: str) -> str:
    if fmt == "text":
        return (result if isinstance(result, str) else result["text"]) + "\n"
    if fmt == "json":
        body = {"file": path, **(result if isinstance(result, dict) else {"text": result})}
        return json.dumps(body, ensure_ascii=False) + "\n"
    cues = subtitle_cues(result["chunks"])
    if fmt == "srt":
        return "".join(f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n\n"
                       for i, (a, b, text) in enumerate(cues, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n\n"
                                      for a, b, text in cues)
    raise ValueError(f"unknown format {fmt!r}")


# ----------------------------------------------------------------------------------------- commands
def cmd_transcribe(args) -> int:
    from .pipelines import load_model_and_processor, transcribe

    timestamps = args.timestamps
    if args.format in ("srt", "vtt") and timestamps is None:
        timestamps = "word"
    if args.format in ("srt", "vtt") and timestamps != "word":
        raise ValueError(f"--format {args.format} needs word timestamps (drop --timestamps char)")
    _audio_files(args.files)  # fail on a missing file before loading a model
    lm_options = {}
    if args.lm is not None:
        lm_options = dict(decoder=args.lm, beam_width=args.beam_width, hotwords=args.hotword,
                          hotword_weight=args.hotword_weight)
    elif args.beam_width is not None or args.hotword:
        raise ValueError("--beam-width and --hotword need --lm DIR_OR_ARPA")
    model, processor = load_model_and_processor(args.model)
    audios = _load_audio_files(args.files, processor.feature_extractor.sampling_rate)
    rate = processor.feature_extractor.sampling_rate
    with progress_bar(sum(a.size for a in audios), "transcribing", not args.quiet) as progress:
        results = transcribe([(a, rate) for a in audios], model, processor=processor,
                             chunk_length_s=args.chunk_length_s, batch_size=args.batch_size,
                             return_timestamps=timestamps, progress=progress, **lm_options)
    texts = [format_transcript(r, args.format, p) for r, p in zip(results, args.files)]
    if args.output and args.format in ("srt", "vtt") and len(texts) > 1:
        os.makedirs(args.output, exist_ok=True)
        for path, text in zip(args.files, texts):
            stem = os.path.splitext(os.path.basename(path))[0]
            _write_text(os.path.join(args.output, f"{stem}.{args.format}"), text)
        return 0
    if args.format == "text" and len(texts) > 1:
        texts = [f"{p}\t{t}" for p, t in zip(args.files, texts)]
    _emit("".join(texts), args.output)
    return 0


def cmd_align(args) -> int:
    from .decoding.formats import to_textgrid
    from .pipelines import align, load_model_and_processor

    _audio_files([args.audio])
    with open(args.transcript, encoding="utf-8") as f:
        transcript = f.read()
    model, processor = load_model_and_processor(args.model)
    rate = processor.feature_extractor.sampling_rate
    audio = _load_audio_files([args.audio], rate)[0]
    with progress_bar(audio.size, "aligning", not args.quiet) as progress:
        result = align((audio, rate), transcript, model, processor=processor, chunk_length_s=args.chunk_length_s,
                       progress=progress)
    if args.format == "textgrid":
        text = to_textgrid(result, audio.size / rate)
    elif args.format == "srt":
        text = format_transcript({"text": result["text"], "chunks": result["words"]}, "srt", args.audio)
    else:
        text = json.dumps({"file": args.audio, **result}, ensure_ascii=False) + "\n"
    _emit(text, args.output)
    return 0


def cmd_features(args) -> int:
    import numpy as np

    from .modeling import TFHubertModel
    from .pipelines import _resolve, extract_features
    from .processing import HubertFeatureExtractor

    _audio_files(args.files)
    model, fe = _resolve(args.model, None, TFHubertModel, HubertFeatureExtractor, processor_required=False)
    rate = getattr(fe, "sampling_rate", 16000)
    audios = _load_audio_files(args.files, rate)
    with progress_bar(sum(a.size for a in audios), "features", not args.quiet) as progress:
        features = extract_features([(a, rate) for a in audios], model, processor=fe, layer=args.layer,
                                    batch_size=args.batch_size, progress=progress)
    output = args.output
    if output is None or not output.endswith((".h5", ".hdf5")):
        out_dir = output or "."
        os.makedirs(out_dir, exist_ok=True)
        for path, array in zip(args.files, features):
            stem = os.path.splitext(os.path.basename(path))[0]
            target = os.path.join(out_dir, f"{stem}.layer{args.layer}.npy")
            from .files import atomic_write

            with atomic_write(target, "wb") as f:
                np.save(f, array)
            print(target)
        return 0
    import h5py

    from .files import atomic_files

    directory, name = os.path.split(os.path.abspath(output))
    with atomic_files(directory) as files:
        with h5py.File(files.path(name), "w") as h5:
            h5.attrs["model"] = str(args.model)
            h5.attrs["layer"] = args.layer
            for path, array in zip(args.files, features):
                h5.create_dataset(os.path.basename(path), data=array)
    print(output)
    return 0


def cmd_export(args) -> int:
    from .export import export_model
    from .hub import resolve_file

    model = _load_any(args.model)
    if args.format == "tflite":
        path = args.out_dir if args.out_dir.endswith(".tflite") else os.path.join(args.out_dir, "model.tflite")
        written = export_model(model, path, format="tflite", quantize=args.quantize)
    elif args.format == "onnx":
        path = args.out_dir if args.out_dir.endswith(".onnx") else os.path.join(args.out_dir, "model.onnx")
        written = export_model(model, path, format="onnx")
    else:
        # With the model's tokenizer files, the export also gets the audio-to-text signatures.
        has_tokenizer = resolve_file(args.model, "vocab.json", required=False) is not None
        written = export_model(model, args.out_dir, format="saved_model", version=args.version,
                               processor=args.model if has_tokenizer else None, overwrite=args.overwrite,
                               warmup=args.warmup)
    print(written)
    return 0


def _load_any(source):
    """Loads a checkpoint into the class its config's `architectures` names (base model otherwise)."""
    import hubert_tf

    from .configuration import load_config

    config = load_config(source)  # HubertConfig or Wav2Vec2Config, by model_type
    names = getattr(config, "architectures", None) or ["HubertModel"]
    cls = getattr(hubert_tf, "TF" + names[0], None) or hubert_tf.TFHubertModel
    return cls.from_pretrained(source, config=config)


def cmd_info(args) -> int:
    import numpy as np

    from .checkpoints.loading import WEIGHT_FILES
    from .configuration import load_config
    from .hub import resolve_file

    config = load_config(args.model)
    found = [f for f in WEIGHT_FILES + ("preprocessor_config.json", "vocab.json", "tokenizer_config.json")
             if resolve_file(args.model, f, required=False)]
    model = _load_any(args.model)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    arch = "stable layer norm (pre-LN)" if config.do_stable_layer_norm else "post-LN"
    lines = [
        f"model:        {args.model}",
        f"class:        {type(model).__name__}",
        f"parameters:   {trainable:,}",
        f"encoder:      {config.num_hidden_layers} layers x {config.hidden_size} hidden, "
        f"{config.num_attention_heads} heads, ffn {config.intermediate_size}, {arch}",
        f"features:     {config.num_feat_extract_layers} convs ({config.feat_extract_norm} norm), "
        f"{config.inputs_to_logits_ratio} samples per frame, receptive field {config.receptive_field}",
        f"vocab_size:   {config.vocab_size}",
        f"files:        {', '.join(found) or '(none)'}",
    ]
    print("\n".join(lines))
    return 0


def _write_text(path, text):
    from .files import atomic_write

    with atomic_write(path, "w") as f:
        f.write(text)


def _emit(text, output):
    if output:
        _write_text(output, text)
    else:
        sys.stdout.write(text)


# ----------------------------------------------------------------------------------------- parser
def _command_of(argv) -> str | None:
    """The command word of `argv` (the first argument that is not an option; the options before a
    command take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _add_bench_parser(sub, command):
    """Mounts `bench`. The benchmark module (which imports Unix-only `resource`) is imported only when
    the command line asks for `bench`; otherwise a placeholder lists it in `--help`."""
    if command == "bench":
        from .benchmark import add_bench_parser

        add_bench_parser(sub)
    else:
        sub.add_parser("bench", help="speed on this machine (ms/call, GFLOP/s, vs PyTorch)")


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The `hubert-tf` argument parser; `argv` (default `sys.argv[1:]`) only decides whether the
    `bench` command's full parser is built."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="hubert-tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hubert-tf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    # The same flags after the command name (`hubert-tf transcribe f.wav --quiet`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="speech to text", parents=[common])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", default=DEFAULT_ASR_MODEL, help=f"hub id or directory (default {DEFAULT_ASR_MODEL})")
    p.add_argument("--chunk-length-s", type=float, default=None, help="chunk long audio (default: 30 s above 30 s)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--timestamps", choices=["word", "char"], default=None)
    p.add_argument("--format", choices=["text", "json", "srt", "vtt"], default="text")
    p.add_argument("--output", "-o", help="output file (a directory for srt/vtt of several files)")
    p.add_argument("--lm", metavar="DIR_OR_ARPA", default=None,
                   help='KenLM beam search: a .arpa/.bin file or a language_model/ directory '
                        '(needs pip install "hubert_tf[lm]")')
    p.add_argument("--beam-width", type=int, default=None, help="beams kept per frame with --lm (default 100)")
    p.add_argument("--hotword", action="append", default=None, metavar="WORD",
                   help="a word to favour with --lm (repeatable)")
    p.add_argument("--hotword-weight", type=float, default=10.0, help="bonus per hotword (default 10)")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("align", help="forced alignment: when each word of a transcript is said",
                       parents=[common])
    p.add_argument("audio", metavar="AUDIO")
    p.add_argument("transcript", metavar="TRANSCRIPT_FILE", help="a UTF-8 text file with what is said")
    p.add_argument("--model", default=DEFAULT_ASR_MODEL, help=f"hub id or directory (default {DEFAULT_ASR_MODEL})")
    p.add_argument("--format", choices=["json", "srt", "textgrid"], default="json")
    p.add_argument("--chunk-length-s", type=float, default=None, help="chunk long audio (default: 30 s above 30 s)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("features", help="hidden states of one layer, per file", parents=[common])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--layer", type=int, required=True, help="index into hidden_states (0 = encoder input)")
    p.add_argument("--model", default=DEFAULT_FEATURES_MODEL,
                   help=f"hub id or directory (default {DEFAULT_FEATURES_MODEL})")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--output", "-o", help="a directory for one .npy per file, or a .h5 file for all")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("export", help="SavedModel (TF Serving), TFLite or ONNX", parents=[common])
    p.add_argument("model", metavar="MODEL")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--format", choices=["saved_model", "tflite", "onnx"], default="saved_model",
                   help="onnx needs pip install \"hubert_tf[onnx]\"")
    p.add_argument("--quantize", choices=["dynamic"], default=None, help="TFLite dynamic-range quantisation")
    p.add_argument("--version", type=int, default=None, help="write OUT_DIR/VERSION/ (TF Serving layout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing SavedModel")
    p.add_argument("--warmup", action="store_true",
                   help="write TF Serving warm-up requests (needs pip install \"hubert_tf[serving]\")")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="config summary, parameter count, files found", parents=[common])
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(func=cmd_info)

    _add_bench_parser(sub, _command_of(argv))
    from .units.cli import add_units_parser  # argparse only: no TensorFlow

    add_units_parser(sub)
    from .records_cli import add_prepare_parser  # argparse only: no TensorFlow

    add_prepare_parser(sub)
    return parser


def main(argv=None) -> int:
    """Runs `hubert-tf` on `argv` (default `sys.argv[1:]`); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("hubert-tf: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's contract: one line, non-zero exit
        if getattr(args, "debug", False):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"hubert-tf: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
