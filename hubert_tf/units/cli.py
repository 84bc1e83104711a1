"""`hubert-tf units FILE... --model M --layer L --kmeans KM [--dedup] [--output PATH]`."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = ("Discrete units of audio files: the features of encoder layer L of a HuBERT model, each frame "
               "replaced by the id of its nearest k-means centroid. Writes '<file>\\t<units>' lines.")


def _add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format libsndfile reads)")
    parser.add_argument("--model", required=True, metavar="M",
                        help="model directory or hub repo id (loaded as TFHubertModel)")
    parser.add_argument("--layer", type=int, default=None, metavar="L",
                        help="encoder layer to cluster (0 = encoder input, num_hidden_layers = last); "
                             "defaults to the 'layer' recorded in the k-means file")
    parser.add_argument("--kmeans", required=True, metavar="KM", help="k-means file written by KMeans.save (.npz)")
    parser.add_argument("--dedup", action="store_true", help="collapse consecutive repeated units")
    parser.add_argument("--output", default="-", metavar="PATH", help="output file (default: standard output)")
    return parser


def add_units_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `units` subcommand to an argparse subparsers object; its `func` default is `run_units`."""
    parser = subparsers.add_parser("units", help="audio files -> discrete HuBERT units", description=DESCRIPTION)
    _add_arguments(parser)
    parser.set_defaults(func=run_units)
    return parser


def run_units(args: argparse.Namespace) -> int:
    """Runs the `units` subcommand; returns the exit status (errors are printed, status 1)."""
    from .discrete import audio_to_units
    from .kmeans import KMeans

    try:
        kmeans = KMeans.load(args.kmeans)
        layer = args.layer if args.layer is not None else kmeans.metadata.get("layer")
        if layer is None:
            raise ValueError(f"--layer is needed: {args.kmeans} records no layer")
        recorded = kmeans.metadata.get("layer")
        if recorded is not None and int(recorded) != int(layer):
            print(f"warning: {args.kmeans} was fitted on layer {recorded}, using layer {layer}", file=sys.stderr)
        audio_to_units(args.files, args.model, int(layer), kmeans, dedup=args.dedup, output=args.output)
    except (OSError, ValueError) as e:
        print(f"hubert-tf units: error: {e}", file=sys.stderr)
        return 1
    return 0


def units_main(argv=None) -> int:
    """Entry point of `hubert-tf units` as a standalone command: parses `argv` and runs it."""
    parser = _add_arguments(argparse.ArgumentParser(prog="hubert-tf units", description=DESCRIPTION))
    return run_units(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(units_main())
