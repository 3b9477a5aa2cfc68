"""One module per CLI subcommand; each exposes ``register(subparsers)``.

A command module imports its heavy dependencies inside its run function, so that
``faceset --help`` stays fast and an optional extra is imported only when used.

The parsed arguments are converted once, at the door: each command's ``run(args)`` turns
its ``argparse.Namespace`` into a dataclass of the command module (``CommandOptions``), and
nothing below sees the Namespace. The parser takes its defaults from those dataclasses'
fields (their class attributes, readable without torch).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TypeVar

T = TypeVar("T")


def from_args(cls: type[T], args: argparse.Namespace, **extra) -> T:
    """An instance of the dataclass ``cls`` from the parsed arguments: every field the parser
    set (by ``dest``), the others at their defaults; ``extra`` overrides."""
    given = vars(args)
    values = {f.name: given[f.name] for f in fields(cls) if f.init and f.name in given}
    return cls(**{**values, **extra})


class CommandOptions:
    """Mixin of the commands' option dataclasses: ``from_args`` converts the parsed arguments."""

    @classmethod
    def from_args(cls, args: argparse.Namespace, **extra):
        return from_args(cls, args, **extra)
