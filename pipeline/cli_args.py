"""The command line's argument types and subcommand helper, shared by `cli.py` and the
commands that live beside what they run (`tools/commands.py`, `inspect/commands.py`).

A bad value reads as one line naming the option and what it takes, exit 2, never as
int()'s own message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from . import config_values

EXIT_CONFIG = 2
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Bad usage: one line, exit 2."""
    sys.stderr.write(f"ofsys-pipeline: error: {message}\n")
    raise SystemExit(EXIT_CONFIG)


def typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type` from a config value parser: a bad value reads as "argument
    --port: must be a port number from 0 to 65535" (one line, exit 2)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.strip("_")
    return convert


PORT = typed(config_values._port)
POSITIVE_INT = typed(config_values._positive_int)
INT = typed(config_values._any_int)
POSITIVE = typed(config_values._positive_float)
FRACTION = typed(config_values._fraction)
NON_NEGATIVE = typed(config_values._non_negative_float)


class Help(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def subcommand(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description, formatter_class=Help
    )
    return parser


def sizes(text: str) -> list[int]:
    """`100000,400000` -> [100000, 400000]: backlog sizes, each a positive integer."""
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes
