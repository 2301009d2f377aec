"""The `explain` and `replay` subcommands: their arguments and `--help`, declared here
so the CLI adds them in one call. Both take every `run` option (flag or OFSYS_*
variable), so they read with the settings the pipeline runs with: topic, group,
partitioner, retention, trigger times, limits.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import config, logs

WINDOWS = (
    "Commands are made with one window per event (docs/operations.md, 'Explain a cart, "
    "replay a range'): the same ids as the pipeline's whenever its window held one event of the "
    "cart. Times are the records' Kafka timestamps, ISO 8601 (2026-11-25T14:00:00Z) or "
    "epoch milliseconds. State starts from the changelog records produced before --from "
    "(else empty); stderr says which. Read-only: assign() under a throwaway group id, "
    "no commit, no changelog write."
)
# explain never talks to Journey: the settings it shares with `run` need no URL or key
_NO_JOURNEY = {"journey_url": "http://journey.invalid/", "account_key": "0" * 32}


def _settings(args: argparse.Namespace, journey: bool) -> config.Settings:
    flags: dict[str, Any] = vars(args)
    if not journey:
        for field, placeholder in _NO_JOURNEY.items():
            if flags.get(field) is None and f"OFSYS_{field.upper()}" not in os.environ:
                flags = {**flags, field: placeholder}
    settings = config.load(os.environ, flags)
    logs.setup(settings.log_level)
    return settings


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain
    from .timerange import TimeRange

    span = TimeRange.parse(args.time_from, args.time_to)
    settings = _settings(args, journey=False)
    return explain(settings, args.cart, span, args.format, out=sys.stdout, err=sys.stderr)


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay_range import replay
    from .timerange import TimeRange

    span = TimeRange.parse(args.time_from, args.time_to)
    settings = _settings(args, journey=not args.dry_run)
    return replay(settings, span, args.cart or [], args.dry_run, out=sys.stdout, err=sys.stderr)


def add_commands(sub: Any) -> None:
    """`explain` and `replay` on the CLI's subparsers."""
    explain = sub.add_parser(
        "explain",
        help="one cart's events and the Journey commands each led to (read-only)",
        description="Read the cart's partition of the input topic (found with the "
        "producers' partitioner), run the pipeline's decode, normalise and state code, and "
        "print each event of the cart as decoded with the Journey commands it led to: JSON "
        "lines, or a table with --format table. " + WINDOWS,
    )
    explain.add_argument("--cart", required=True, metavar="ID", help="the cart id")
    explain.add_argument(
        "--from",
        dest="time_from",
        metavar="T",
        help="range start, ISO 8601 or epoch ms (default: the beginning)",
    )
    explain.add_argument(
        "--to",
        dest="time_to",
        metavar="T",
        help="range end, inclusive, ISO 8601 or epoch ms (default: now)",
    )
    explain.add_argument(
        "--format",
        choices=("json", "table"),
        default="json",
        help="JSON lines (default) or a table",
    )
    config.add_arguments(explain)
    explain.set_defaults(func=cmd_explain)

    replay = sub.add_parser(
        "replay",
        help="re-send a time range's Journey commands with the same ids",
        description="Re-send to Journey the commands the records of a time range make, "
        "with the pipeline's deterministic ids, batching, retries and Retry-After; print a "
        "JSON summary (events read, commands sent, accepted, rejected) and exit 0. The "
        "group's committed offsets and the changelog are never touched. " + WINDOWS,
    )
    replay.add_argument(
        "--from",
        dest="time_from",
        metavar="T",
        required=True,
        help="range start, ISO 8601 or epoch ms (record time)",
    )
    replay.add_argument(
        "--to",
        dest="time_to",
        metavar="T",
        required=True,
        help="range end, inclusive, ISO 8601 or epoch ms",
    )
    replay.add_argument(
        "--cart",
        action="append",
        metavar="ID",
        help="only this cart (repeatable): its partition and commands",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands (JSON lines) instead of sending them",
    )
    config.add_arguments(replay)
    replay.set_defaults(func=cmd_replay)
