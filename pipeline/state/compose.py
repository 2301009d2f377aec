"""Journey commands as the state composes them: the command, its optional arguments,
money, and the content digest in the ids of commands that depend on where a window
closed. Pure functions; a command's content never depends on anything but their input.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..journey.commands import Command


def command(  # noqa: PLR0917  (called on the hot path: positional is cheaper)
    cid: str, ts: int, cart_id: str | None, email: str | None, call: str, args: dict[str, Any]
) -> Command:
    return {"id": cid, "ts": ts, "cartId": cart_id, "email": email, "call": call, "args": args}


def put(args: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Optional arguments without a value are left out, never sent as null."""
    if value is not None:
        args[key] = value
    return args


def money(value: float) -> float:
    return round(value, 2)


def digest(payload: Any) -> str:
    """Eight hex digits of what a command says: part of the ids of commands whose
    content depends on where windows closed."""
    return hashlib.blake2b(orjson.dumps(payload), digest_size=4).hexdigest()
