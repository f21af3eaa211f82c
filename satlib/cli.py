"""Command line: `satlib <command> ...` (also `python -m satlib`)."""

from __future__ import annotations

import argparse


def _data_synth(args: argparse.Namespace) -> int:
    from satlib.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(args.out, num_classes=args.num_classes, per_class=args.per_class,
                           size=args.size, seed=args.seed, variant=args.variant)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="generate the synthetic WSOL dataset (CUB layout)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num-classes", type=int, default=6)
    synth.add_argument("--per-class", type=int, default=200)
    synth.add_argument("--size", type=int, default=96, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--variant", default="shapes", choices=["shapes", "parts"])
    synth.set_defaults(func=_data_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
