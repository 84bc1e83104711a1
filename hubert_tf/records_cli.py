"""`hubert-tf prepare SOURCE OUT_DIR [--processor P] [--labels FILE] [--num-shards N] [--prefix NAME]
[--audio-format int16|flac]`: a corpus -> TFRecord shards for `hubert_tf.records.tfrecord_dataset`."""

from __future__ import annotations

import argparse
import os

DESCRIPTION = ("Writes TFRecord shards (audio as 16-bit PCM or FLAC, label ids, lengths) from a LibriSpeech "
               "directory (transcripts tokenised with --processor) or a fairseq .tsv manifest (with --labels: "
               "a .km file of unit ids, or a text file of one transcript per line).")


def add_prepare_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Adds the `prepare` subcommand (argparse only: no TensorFlow imported); its `func` is `run_prepare`.
    `parents`: the CLI's common option parsers (--quiet, --debug)."""
    p = subparsers.add_parser("prepare", help="a corpus -> TFRecord training shards", description=DESCRIPTION,
                              parents=list(parents))
    p.add_argument("source", metavar="SOURCE", help="a LibriSpeech-style directory or a fairseq .tsv manifest")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--processor", default=None, help="hub id or directory of the processor (for transcripts)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="with a .tsv: a .km file (unit ids per line) or one transcript per line")
    p.add_argument("--num-shards", type=int, default=16)
    p.add_argument("--prefix", default="train")
    p.add_argument("--audio-format", choices=["int16", "flac"], default="int16")
    p.set_defaults(func=run_prepare)
    return p


def run_prepare(args: argparse.Namespace) -> int:
    """Runs `prepare`; prints the shard paths. Errors raise (the CLI prints one line)."""
    from .cli_common import check_input_files, quiet_tensorflow

    if not os.path.isdir(args.source):
        check_input_files([args.source])  # before TensorFlow loads
    if args.labels:
        check_input_files([args.labels])
    quiet_tensorflow(getattr(args, "debug", False))
    from .data import read_librispeech
    from .records import write_tfrecord_shards
    from .units.shards import read_km_labels, read_manifest

    processor = None
    if args.processor:
        from .processing import HubertProcessor

        processor = HubertProcessor.from_pretrained(args.processor)
    transcripts = labels = None
    if os.path.isdir(args.source):
        if args.labels:
            raise ValueError("--labels is for .tsv manifests; a LibriSpeech directory has its transcripts")
        audio, transcripts = read_librispeech(args.source)
    else:
        audio = read_manifest(args.source)
        if args.labels and args.labels.endswith(".km"):
            labels = read_km_labels(args.labels)
        elif args.labels:
            with open(args.labels, encoding="utf-8") as f:
                transcripts = f.read().splitlines()
    if transcripts is not None and processor is None:
        raise ValueError("transcripts need --processor (its tokenizer gives the label ids)")
    paths = write_tfrecord_shards(audio, args.out_dir, transcripts=transcripts, labels=labels, processor=processor,
                                  num_shards=args.num_shards, prefix=args.prefix, audio_format=args.audio_format)
    print("\n".join(paths))
    return 0
