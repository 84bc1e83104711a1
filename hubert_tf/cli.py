"""`hubert-tf`: transcribe, classify, extract features, align, export, inspect and benchmark HuBERT models.

Every command takes a hub id or a local directory, checks its input files and plans its outputs before
loading a model, processes files one at a time (each result is written as soon as its file is done),
and prints errors as one line (`hubert-tf: error: <what> (<file>)`, exit status 1); `--debug` shows
TensorFlow's log lines and the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .cli_common import (CommandError, FileRunner, body_only_loading, check_input_files, common_options,
                         error_message, per_file_options, print_error, quiet_tensorflow)
from .cli_outputs import ResultWriter, plan_outputs, to_json
from .configuration import DEFAULT_ASR_MODEL, DEFAULT_FEATURES_MODEL

# Nothing above imports TensorFlow, numpy or tqdm: `hubert-tf --help` and `--version` stay fast. Every
# command imports what it needs when it runs, after its cheap checks.

EXIT_ERROR = 1
EXIT_USAGE = 2
EXTENSIONS = {"text": ".txt", "json": ".json", "jsonl": ".jsonl", "srt": ".srt", "vtt": ".vtt"}


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
    """One file's transcript (`{"text", "chunks"?}`) as "text", "json", "jsonl", "srt" or "vtt" text."""
    result = as_transcript(result)
    if fmt == "text":
        return result["text"] + "\n"
    if fmt in ("json", "jsonl"):
        return to_json({"file": path, **result}) + "\n"
    cues = subtitle_cues(result["chunks"])
    if fmt == "srt":
        return "".join(f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n\n"
                       for i, (a, b, text) in enumerate(cues, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n\n"
                                      for a, b, text in cues)
    raise ValueError(f"unknown format {fmt!r}")


def as_transcript(result) -> dict:
    """`transcribe`'s result as a dict `{"text", ...}` (older versions returned a bare str without
    timestamps)."""
    return result if isinstance(result, dict) else {"text": result}


def _render_transcript(fmt):
    def render(path, record, with_path):
        text = format_transcript(record, fmt, path)
        return f"{path}\t{text}" if with_path and fmt == "text" else text

    return render


def format_labels(path, record, with_path) -> str:
    """`classify` results as `label<TAB>score` lines (`file<TAB>label<TAB>score` for several files)."""
    prefix = f"{path}\t" if with_path else ""
    return "".join(f"{prefix}{item['label']}\t{float(item['score']):.4f}\n" for item in record["labels"])


# ----------------------------------------------------------------------------------------- commands
def _inputs(args) -> tuple[list[str], int]:
    """The input files that exist (all of them, unless --skip-errors dropped some) and how many were bad."""
    files = check_input_files(args.files, getattr(args, "skip_errors", False))
    return files, len(args.files) - len(files)


def cmd_transcribe(args) -> int:
    timestamps = args.timestamps
    if args.format in ("srt", "vtt") and timestamps is None:
        timestamps = "word"
    if args.format in ("srt", "vtt") and timestamps != "word":
        raise ValueError(f"--format {args.format} needs word timestamps (drop --timestamps char)")
    lm_options = {}
    if args.lm is not None:
        lm_options = dict(decoder=args.lm, beam_width=args.beam_width, hotwords=args.hotword,
                          hotword_weight=args.hotword_weight)
    elif args.beam_width is not None or args.hotword:
        raise ValueError("--beam-width and --hotword need --lm DIR_OR_ARPA")
    files, failed = _inputs(args)  # before loading a model: a missing file fails at once
    plan = plan_outputs(args.files, args.output, suffix=EXTENSIONS[args.format],
                        one_file_for_all=args.format not in ("srt", "vtt"))
    quiet_tensorflow(args.debug)
    from .pipelines import load_model_and_processor, transcribe

    model, processor = load_model_and_processor(args.model)
    rate = processor.feature_extractor.sampling_rate
    runner = FileRunner(files, args, "transcribing", rate, failed)

    def work(audio, progress):
        return transcribe((audio, rate), model, processor=processor, chunk_length_s=args.chunk_length_s,
                          batch_size=args.batch_size, return_timestamps=timestamps, progress=progress, **lm_options)

    with ResultWriter(plan, args.format, _render_transcript(args.format), len(args.files) > 1) as writer:
        for path, result in runner.run(work):
            writer.add(path, as_transcript(result))
    return runner.exit_status()


def cmd_classify(args) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    files, failed = _inputs(args)
    plan = plan_outputs(args.files, args.output, suffix=EXTENSIONS[args.format], one_file_for_all=True)
    quiet_tensorflow(args.debug)
    from .pipelines import classify

    model = _load_any(args.model)  # once, up front: a bad model is one error, not one per file
    if not hasattr(model, "classifier") or not getattr(model.config, "id2label", None):
        raise ValueError(f"not an audio-classification model: {type(model).__name__} has no classification "
                         f"head ({args.model})")
    # Decoded at 16 kHz; `classify` resamples to the model's rate (from its own feature extractor).
    runner = FileRunner(files, args, "classifying", 16000, failed)

    def work(audio, progress):
        return classify((audio, 16000), model, top_k=args.top_k, chunk_length_s=args.chunk_length_s,
                        progress=progress)

    with ResultWriter(plan, args.format, format_labels, len(args.files) > 1) as writer:
        for path, labels in runner.run(work):
            writer.add(path, {"labels": labels})
    return runner.exit_status()


def cmd_align(args) -> int:
    check_input_files([args.audio, args.transcript])
    with open(args.transcript, encoding="utf-8") as f:
        transcript = f.read()
    plan = plan_outputs([args.audio], args.output, suffix="." + args.format, one_file_for_all=False)
    quiet_tensorflow(args.debug)
    from .decoding.formats import to_textgrid
    from .pipelines import align, load_model_and_processor

    model, processor = load_model_and_processor(args.model)
    rate = processor.feature_extractor.sampling_rate
    runner = FileRunner([args.audio], args, "aligning", rate)

    def work(audio, progress):
        result = align((audio, rate), transcript, model, processor=processor, chunk_length_s=args.chunk_length_s,
                       progress=progress)
        if args.format == "textgrid":
            return to_textgrid(result, audio.size / rate)
        if args.format == "srt":
            return format_transcript({"text": result["text"], "chunks": result["words"]}, "srt", args.audio)
        return to_json({"file": args.audio, **result}) + "\n"

    with ResultWriter(plan, "text", lambda path, text, with_path: text["text"]) as writer:
        for path, text in runner.run(work):
            writer.add(path, {"text": text})
    return 0


def cmd_features(args) -> int:
    output = args.output
    h5 = output is not None and output.endswith((".h5", ".hdf5"))
    npy = output is not None and output.endswith(".npy")
    files, failed = _inputs(args)
    plan = plan_outputs(args.files, output, suffix=f".layer{args.layer}.npy", one_file_for_all=h5, default=".",
                        directory=not (h5 or npy))
    if h5:
        from .cli_outputs import input_keys

        keys = dict(zip(args.files, input_keys(args.files, keep_extension=True)))
    quiet_tensorflow(args.debug)
    import numpy as np

    from .files import atomic_files, atomic_write
    from .modeling import TFHubertModel
    from .pipelines import _resolve, extract_features
    from .processing import HubertFeatureExtractor

    with body_only_loading(args.debug):
        model, fe = _resolve(args.model, None, TFHubertModel, HubertFeatureExtractor, processor_required=False)
    n = model.config.num_hidden_layers + 1
    if not -n <= args.layer < n:  # before any file is decoded
        raise ValueError(f"--layer {args.layer} is out of range: the model has hidden_states 0..{n - 1}")
    rate = getattr(fe, "sampling_rate", 16000)
    runner = FileRunner(files, args, "features", rate, failed)

    def work(audio, progress):
        return extract_features((audio, rate), model, processor=fe, layer=args.layer, batch_size=args.batch_size,
                                progress=progress)

    if not h5:
        for path, array in runner.run(work):
            target = plan.per_input[path] if plan.per_input else plan.path
            with atomic_write(target, "wb") as f:
                np.save(f, array)
            print(target, flush=True)
        return runner.exit_status()
    import h5py

    directory, name = os.path.split(os.path.abspath(output))
    with atomic_files(directory) as written, h5py.File(written.path(name), "w") as h5_file:
        h5_file.attrs["model"] = str(args.model)
        h5_file.attrs["layer"] = args.layer
        for path, array in runner.run(work):
            h5_file.create_dataset(keys[path], data=array)
    print(output)
    return runner.exit_status()


def cmd_export(args) -> int:
    import logging

    from .cli_common import Stages

    target = args.out_dir
    if args.format in ("tflite", "onnx") and not target.endswith("." + args.format):
        target = os.path.join(target, f"model.{args.format}")
    stages = Stages(args, 2)
    with stages.stage(f"loading {args.model}"):
        quiet_tensorflow(args.debug)
        if not args.debug:
            logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        from .export import export_model
        from .hub import resolve_file

        model = _load_any(args.model)
    with stages.stage(f"exporting {args.format}"):
        if args.format == "tflite":
            written = export_model(model, target, format="tflite", quantize=args.quantize)
        elif args.format == "onnx":
            written = export_model(model, target, format="onnx")
        else:
            # With the model's tokenizer files, the export also gets the audio-to-text signatures.
            has_tokenizer = resolve_file(args.model, "vocab.json", required=False) is not None
            written = export_model(model, target, format="saved_model", version=args.version,
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
    quiet_tensorflow(args.debug)
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

# ----------------------------------------------------------------------------------------- parser
def _command_of(argv) -> str | None:
    """The command word of `argv` (the first argument that is not an option; the options before a
    command take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _add_bench_parser(sub, command):
    """Mounts `bench`. The benchmark module (which imports Unix-only `resource`) is imported only when
    the command line asks for `bench`; otherwise a placeholder lists it in `--help`."""
    if command == "bench":
        from .benchmark import add_bench_parser, run_bench

        def run_bench_quietly(args):
            quiet_tensorflow(args.debug)
            return run_bench(args)

        add_bench_parser(sub).set_defaults(func=run_bench_quietly)
    else:
        sub.add_parser("bench", help="speed on this machine (ms/call, GFLOP/s, vs PyTorch)")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """--version and the common options before the command word (`hubert-tf --quiet transcribe ...`)."""
    parser.add_argument("--version", action="version", version=f"hubert-tf {__version__}")
    parser.add_argument("--debug", action="store_true", help="TensorFlow's log lines and the traceback on errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The `hubert-tf` argument parser; `argv` (default `sys.argv[1:]`) only decides whether the
    `bench` command's full parser is built."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="hubert-tf", description=__doc__.splitlines()[0])
    add_global_options(parser)
    common, per_file = common_options(), per_file_options()
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="speech to text", parents=[common, per_file])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", default=DEFAULT_ASR_MODEL, help=f"hub id or directory (default {DEFAULT_ASR_MODEL})")
    p.add_argument("--chunk-length-s", type=float, default=None, help="chunk long audio (default: 30 s above 30 s)")
    p.add_argument("--batch-size", type=int, default=1, help="chunks of a file run together (default 1)")
    p.add_argument("--timestamps", choices=["word", "char"], default=None)
    p.add_argument("--format", choices=["text", "json", "jsonl", "srt", "vtt"], default="text",
                   help="json: one JSON document (a list for several files); jsonl: one line per file as it "
                        "finishes; srt/vtt: subtitles (one file per input)")
    p.add_argument("--output", "-o", help="output file, or a directory for one file per input (needed for "
                                          "srt/vtt of several files; same-named inputs keep their relative paths)")
    p.add_argument("--lm", metavar="DIR_OR_ARPA", default=None,
                   help='KenLM beam search: a .arpa/.bin file or a language_model/ directory '
                        '(needs pip install "hubert_tf[lm]")')
    p.add_argument("--beam-width", type=int, default=None, help="beams kept per frame with --lm (default 100)")
    p.add_argument("--hotword", action="append", default=None, metavar="WORD",
                   help="a word to favour with --lm (repeatable)")
    p.add_argument("--hotword-weight", type=float, default=10.0, help="bonus per hotword (default 10)")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("classify", help="audio classification: top-k labels with scores",
                       parents=[common, per_file])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", required=True, help="hub id or directory of an audio-classification model")
    p.add_argument("--top-k", type=int, default=5, help="labels per file (default 5)")
    p.add_argument("--chunk-length-s", type=float, default=None,
                   help="score long audio in chunks of this length and average them")
    p.add_argument("--format", choices=["text", "json", "jsonl"], default="text")
    p.add_argument("--output", "-o", help="output file (default: stdout), or a directory for one file per input")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("align", help="forced alignment: when each word of a transcript is said",
                       parents=[common])
    p.add_argument("audio", metavar="AUDIO")
    p.add_argument("transcript", metavar="TRANSCRIPT_FILE", help="a UTF-8 text file with what is said")
    p.add_argument("--model", default=DEFAULT_ASR_MODEL, help=f"hub id or directory (default {DEFAULT_ASR_MODEL})")
    p.add_argument("--format", choices=["json", "srt", "textgrid"], default="json")
    p.add_argument("--chunk-length-s", type=float, default=None, help="chunk long audio (default: 30 s above 30 s)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("features", help="hidden states of one layer, per file", parents=[common, per_file])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--layer", type=int, required=True, help="index into hidden_states (0 = encoder input)")
    p.add_argument("--model", default=DEFAULT_FEATURES_MODEL,
                   help=f"hub id or directory (default {DEFAULT_FEATURES_MODEL})")
    p.add_argument("--batch-size", type=int, default=1, help="chunks of a file run together (default 1)")
    p.add_argument("--output", "-o", help="a directory for one .npy per file (default: the current one), "
                                          "a .npy file for one input, or a .h5 file for all")
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
    from .units.cli import add_kmeans_parser, add_units_parser  # argparse only: no TensorFlow

    add_units_parser(sub, parents=[common, per_file])
    add_kmeans_parser(sub, parents=[common, per_file])
    from .records_cli import add_prepare_parser  # argparse only: no TensorFlow

    add_prepare_parser(sub, parents=[common])
    return parser


def main(argv=None) -> int:
    """Runs `hubert-tf` on `argv` (default `sys.argv[1:]`); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return run_command(args)


def run_command(args) -> int:
    """Runs a parsed command line: errors print one line and give exit status 1 (with --debug: the
    traceback)."""
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("hubert-tf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hubert-tf transcribe ... | head -1`: the reader left, as for any Unix tool
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the CLI's contract: one line, non-zero exit
        if getattr(args, "debug", False):
            raise
        print_error(str(error) if isinstance(error, CommandError) else error_message(error))
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
