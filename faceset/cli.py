"""The ``faceset`` console script: one subcommand per module in ``faceset.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order --help lists them.
COMMANDS = ("demo", "reconstruct", "fit", "train", "synth", "evaluate", "compare", "benchmark",
            "convert_bfm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceset",
        description="3D face reconstruction from a single photo up to a photo set.")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: one per available core; idle "
                             "threads sleep instead of spinning, see recon.threads)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"faceset.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"faceset.commands.{name}":
                raise
            continue  # a command still being written is simply absent
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Before anything imports torch: the OpenMP wait policy is read when torch loads.
        from recon.threads import configure_threads
        configure_threads(args.threads)
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"faceset {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
