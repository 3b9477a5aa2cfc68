"""The ``faceset`` console script: one subcommand per module in ``faceset.commands``."""

from __future__ import annotations

import argparse
import copy
import importlib
import sys

from faceset.errors import run_command

# Subcommand modules, in the order --help lists them.
COMMANDS = ("demo", "reconstruct", "fit", "train", "synth", "evaluate", "compare", "benchmark",
            "convert_bfm", "aggregate", "train_cnet")


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
        importlib.import_module(f"faceset.commands.{name}").register(subparsers)
    accept_global_options_after_command(parser, subparsers)
    return parser


def accept_global_options_after_command(parser: argparse.ArgumentParser, subparsers) -> None:
    """Let every option of the main parser (``--threads`` ...) also follow the subcommand.

    Each subcommand parser (nested ones too) gets a copy whose default is SUPPRESS, so a
    value given after the command is set and one given before it is kept.
    """
    shared = [a for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction)]
    pending = list(subparsers.choices.values())
    while pending:
        sub = pending.pop()
        for action in shared:
            if not any(s in sub._option_string_actions for s in action.option_strings):
                sub._add_action(copy.copy(action))
                sub._option_string_actions[action.option_strings[0]].default = argparse.SUPPRESS
        for nested in sub._actions:
            if isinstance(nested, argparse._SubParsersAction):
                pending.extend(nested.choices.values())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = " ".join(filter(None, (args.command, getattr(args, "protocol", None))))

    def run():
        # Before anything imports torch: the OpenMP wait policy is read when torch loads.
        from recon.threads import configure_threads
        configure_threads(args.threads)
        return args.func(args)
    return run_command(name, run, getattr(args, "out", None))


if __name__ == "__main__":
    sys.exit(main())
