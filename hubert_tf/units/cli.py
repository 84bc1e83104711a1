"""`hubert-tf units` (audio files -> discrete units) and `hubert-tf kmeans` (fit the k-means file that
`units --kmeans` reads).

    hubert-tf kmeans corpus/*.wav --model M --layer 6 --clusters 500 -o km500.npz
    hubert-tf units more/*.wav --kmeans km500.npz -o units.txt      # model and layer recorded in km500.npz
    hubert-tf kmeans corpus/*.wav --mfcc --clusters 100 -o km100.npz  # HuBERT iteration 1 (100 Hz)

Both share the CLI's common options (--quiet/--progress/--debug, --skip-errors), check every file before
a model loads, stream file by file and name the file in errors.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..cli_common import (CommandError, FileRunner, about_file, body_only_loading, check_input_files, common_options,
                          per_file_options, quiet_tensorflow)
from ..cli_outputs import ResultWriter, plan_outputs

DESCRIPTION = ("Discrete units of audio files: the features of encoder layer L of a HuBERT model, each frame "
               "replaced by the id of its nearest k-means centroid (or MFCC frames, for an MFCC k-means). "
               "Writes '<file>\\t<units>' lines.")
KMEANS_DESCRIPTION = ("Fits k-means on the frames of audio files: encoder layer L of a HuBERT model, or MFCCs "
                      "(--mfcc), and writes the .npz file `hubert-tf units --kmeans` reads (it records the "
                      "features, layer and model).")
RATE = 16000


def _add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format libsndfile reads)")
    parser.add_argument("--kmeans", required=True, metavar="KM",
                        help="k-means file: .npz from `hubert-tf kmeans` / KMeans.save, or a fairseq km.bin")
    parser.add_argument("--model", default=None, metavar="M",
                        help="model directory or hub repo id (loaded as TFHubertModel); defaults to the model "
                             "recorded in the k-means file")
    parser.add_argument("--layer", type=int, default=None, metavar="L",
                        help="encoder layer to cluster (0 = encoder input, num_hidden_layers = last); "
                             "defaults to the 'layer' recorded in the k-means file")
    parser.add_argument("--dedup", action="store_true", help="collapse consecutive repeated units")
    parser.add_argument("--format", choices=["text", "json", "jsonl"], default="text",
                        help="text: '<file>\\t<units>' lines (default); json/jsonl as for transcribe")
    parser.add_argument("--output", "-o", default="-", metavar="PATH", help="output file (default: standard output)")
    return parser


def add_units_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Adds the `units` subcommand to an argparse subparsers object; its `func` default is `run_units`."""
    parser = subparsers.add_parser("units", help="audio files -> discrete HuBERT units", description=DESCRIPTION,
                                   parents=list(parents))
    _add_arguments(parser)
    parser.set_defaults(func=run_units)
    return parser


def add_kmeans_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Adds the `kmeans` subcommand; its `func` default is `run_kmeans`."""
    p = subparsers.add_parser("kmeans", help="fit the k-means file `units` needs (layer features or MFCCs)",
                              description=KMEANS_DESCRIPTION, parents=list(parents))
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files to fit on")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="M", help="model directory or hub id whose layer features are clustered")
    source.add_argument("--mfcc", action="store_true", help="cluster 39-dim MFCC frames (100 Hz) instead")
    p.add_argument("--layer", type=int, default=None, metavar="L", help="encoder layer (needed with --model)")
    p.add_argument("--clusters", "-k", type=int, required=True, metavar="K", help="number of units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-iter", type=int, default=100, help="passes over the frames (default 100)")
    p.add_argument("--batch-size", type=int, default=10000, help="frames per mini-batch (default 10000)")
    p.add_argument("--output", "-o", required=True, metavar="KM.npz", help="the k-means file to write")
    p.set_defaults(func=run_kmeans)
    return p


def load_kmeans_file(path):
    """A k-means file as a `KMeans`: `.npz`/`.npy` (`KMeans.load`) or a fairseq/scikit-learn `km.bin`."""
    if os.fspath(path).endswith((".bin", ".pkl", ".joblib")):
        from .km_bin import read_km_bin

        return read_km_bin(path)
    from .kmeans import KMeans

    return KMeans.load(path)


def _units_source(args, kmeans):
    """(model or None for MFCC units, layer or None) from the flags and the k-means file's metadata."""
    if kmeans.metadata.get("features") == "mfcc":
        if args.model or args.layer is not None:
            raise ValueError(f"{args.kmeans} clusters MFCC frames: drop --model/--layer")
        return None, None
    layer = args.layer if args.layer is not None else kmeans.metadata.get("layer")
    if layer is None:
        raise ValueError(f"--layer is needed: {args.kmeans} records no layer")
    recorded = kmeans.metadata.get("layer")
    if recorded is not None and int(recorded) != int(layer):
        print(f"hubert-tf: warning: {args.kmeans} was fitted on layer {recorded}, using layer {layer}",
              file=sys.stderr)
    model = args.model or kmeans.metadata.get("model")
    if model is None:
        raise ValueError(f"--model is needed: {args.kmeans} records no model")
    return model, int(layer)


def run_units(args: argparse.Namespace) -> int:
    """Runs the `units` subcommand; returns the exit status (errors raise: the CLI prints one line)."""
    files = check_input_files(args.files, getattr(args, "skip_errors", False))
    failed = len(args.files) - len(files)
    kmeans = load_kmeans_file(args.kmeans)  # numpy only: a bad file fails before TensorFlow loads
    model_source, layer = _units_source(args, kmeans)
    plan = plan_outputs(args.files, args.output, suffix=".units", one_file_for_all=True)
    quiet_tensorflow(getattr(args, "debug", False))
    from .discrete import check_kmeans_fits, dedup_units, extract_layer_features, load_model, units_line

    if model_source is None:
        from .mfcc import mfcc

        def features(audio, progress):
            return mfcc(audio)
    else:
        with body_only_loading(getattr(args, "debug", False)):
            model = load_model(model_source)
        try:
            check_kmeans_fits(kmeans, model)
        except ValueError as error:
            raise CommandError(about_file(error, args.kmeans)) from error

        def features(audio, progress):
            return extract_layer_features(model, (audio, RATE), layer, progress=progress)

    def work(audio, progress):
        units = kmeans.predict(features(audio, progress))
        return dedup_units(units) if args.dedup else units

    runner = FileRunner(files, args, "units", RATE, failed)
    with ResultWriter(plan, args.format, lambda path, record, _: units_line(path, record["units"]),
                      len(args.files) > 1) as writer:
        for path, units in runner.run(work):
            writer.add(path, {"units": units.tolist()})
    return runner.exit_status()


def run_kmeans(args: argparse.Namespace) -> int:
    """Runs the `kmeans` subcommand: features of every file, then k-means; prints the file written."""
    if args.clusters < 1:
        raise ValueError(f"--clusters must be >= 1, got {args.clusters}")
    if args.model and args.layer is None:
        raise ValueError("--model needs --layer L (the encoder layer to cluster)")
    if args.mfcc and args.layer is not None:
        raise ValueError("--layer is for --model: MFCCs have no layers")
    files = check_input_files(args.files, getattr(args, "skip_errors", False))
    failed = len(args.files) - len(files)
    output = args.output if args.output.endswith(".npz") else args.output + ".npz"  # what KMeans.save writes
    plan_outputs(args.files, output, suffix=".npz", one_file_for_all=True)  # creates the parent, refuses inputs
    quiet_tensorflow(getattr(args, "debug", False))
    from .kmeans import KMeans
    from .targets import layer_kmeans_metadata, mfcc_kmeans_metadata

    if args.mfcc:
        from .mfcc import mfcc

        metadata = mfcc_kmeans_metadata()

        def work(audio, progress):
            return mfcc(audio)
    else:
        from .discrete import extract_layer_features, load_model

        with body_only_loading(getattr(args, "debug", False)):
            model = load_model(args.model)
        recorded = os.path.abspath(args.model) if os.path.isdir(args.model) else args.model
        metadata = {**layer_kmeans_metadata(model, args.layer), "model": recorded}

        def work(audio, progress):
            return extract_layer_features(model, (audio, RATE), args.layer, progress=progress)

    runner = FileRunner(files, args, "features", RATE, failed)
    frames = [features for _, features in runner.run(work)]
    if not frames:
        raise ValueError("no file could be read: nothing to fit on")
    kmeans = KMeans(args.clusters, batch_size=args.batch_size, max_iter=args.max_iter, seed=args.seed,
                    metadata=metadata).fit(frames)
    print(kmeans.save(output))
    return runner.exit_status()


def units_main(argv=None) -> int:
    """Entry point of `hubert-tf units` as a standalone command: parses `argv` and runs it."""
    from ..cli import run_command

    parser = _add_arguments(argparse.ArgumentParser(prog="hubert-tf units", description=DESCRIPTION,
                                                    parents=[common_options(), per_file_options()]))
    parser.set_defaults(func=run_units)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(units_main())
