"""Journey emulator, contract side: what a request to the emulator must be.

Owns the per-command validation (required args of each call, derived from
pipeline.journey.commands.CALLS; no nulls in args), the canonical form two copies of a
command are compared by, the names and help of the ledger's counters, and the fault
document (`_Faults`) with its validation (`_parse_faults`). No I/O and no state: the
server in pipeline.tools.emulator applies these rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..journey.commands import CALLS, Kind

INGEST_PATH = "/v1/journey"

_STR, _NUM, _QTY = 0, 1, 2
_KIND_TEXT = {_STR: "a non-empty string", _NUM: "a number", _QTY: "an integer >= 0"}
_CHECK: dict[Kind, int] = {"text": _STR, "number": _NUM, "quantity": _QTY}
# Required args of each contract call, in the contract's order, from the one table of
# calls (pipeline.journey.commands.CALLS); optional args are free.
_REQUIRED: dict[str, tuple[tuple[str, int], ...]] = {
    call: tuple((name, _CHECK[kind]) for name, kind in required) for call, required in CALLS.items()
}
_COUNTERS = (
    "duplicates_received",
    "conflicts",
    "duplicate_batches",
    "batches",
    "requests",
    "rejected",
    "faults_injected",
)
# Help of each journey_emulator_<name>_total counter (GET /metrics): the ledger's counters.
_METRIC_HELP = {
    "accepted": "Commands recorded (first copy of each command id)",
    "duplicates_received": "Commands whose id was already recorded, with the same content",
    "conflicts": "Commands whose id was already recorded with different content (violation)",
    "duplicate_batches": "Requests answered from the batchId idempotency cache",
    "batches": "Batches recorded",
    "requests": "POST /v1/journey requests received",
    "rejected": "Requests rejected as invalid (400)",
    "faults_injected": "Requests answered with an injected fault",
}
_FAULT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _has_null(value: Any) -> bool:
    """True if a nested arg (object or list) holds a null anywhere."""
    items = value.values() if type(value) is dict else value
    return any(v is None or (type(v) in (dict, list) and _has_null(v)) for v in items)


def _canonical(cmd: dict[str, Any]) -> bytes:
    """A command's content as bytes that compare equal iff the JSON documents do."""
    return orjson.dumps(cmd, option=orjson.OPT_SORT_KEYS)


def _command_error(cmd: Any) -> str | None:
    """What is wrong with one command, or None. Plain type checks: this is the hot path."""
    if type(cmd) is not dict:
        return "command must be an object"
    cid = cmd.get("id")
    if type(cid) is not str or not cid:
        return "id must be a non-empty string"
    if type(cmd.get("ts")) is not int:
        return "ts must be an integer (ms since the epoch)"
    for key in ("cartId", "email"):
        if key not in cmd or (cmd[key] is not None and type(cmd[key]) is not str):
            return f"{key} must be present, a string or null"
    call = cmd.get("call")
    required = _REQUIRED.get(call) if type(call) is str else None
    if required is None:
        return f"unknown call {call!r}"
    args = cmd.get("args")
    if type(args) is not dict:
        return "args must be an object"
    for name, kind in required:
        if name not in args:
            return f"{call} requires arg {name!r}"
        value = args[name]
        if kind == _STR:
            ok = type(value) is str and value != ""
        elif kind == _QTY:
            ok = type(value) is int and value >= 0
        else:
            ok = type(value) in (int, float)
        if not ok:
            return f"arg {name!r} must be {_KIND_TEXT[kind]}"
    for name, value in args.items():
        if value is None:
            return f"arg {name!r} is null (leave optional args out instead)"
        if type(value) in (dict, list) and _has_null(value):
            return f"arg {name!r} contains a null"
    return None


@dataclass
class _Faults:
    """Injected misbehaviour; replaced as a whole by each POST /faults."""

    error_rate: float = 0.0
    status: int = 503
    retry_after: int | None = None
    latency_ms: float = 0.0
    unauthorized: bool = False
    fail_next: int = 0
    reject_ids: list[str] = field(default_factory=list)
    seed: int | None = None


def _parse_faults(raw: dict[str, Any]) -> _Faults:
    """Validate a fault document; ValueError names the first bad field."""
    checks: dict[str, tuple[tuple[type, ...], Any, str]] = {
        "error_rate": ((int, float), lambda v: 0 <= v <= 1, "a number in 0..1"),
        "status": ((int,), lambda v: v in _FAULT_STATUSES, f"one of {sorted(_FAULT_STATUSES)}"),
        "retry_after": ((int, type(None)), lambda v: v is None or v >= 0, "an int >= 0"),
        "latency_ms": ((int, float), lambda v: v >= 0, "a number >= 0"),
        "unauthorized": ((bool,), lambda v: True, "a boolean"),
        "fail_next": ((int,), lambda v: v >= 0, "an int >= 0"),
        "reject_ids": ((list,), lambda v: all(type(i) is str for i in v), "a list of ids"),
        "seed": ((int, type(None)), lambda v: True, "an int"),
    }
    faults = _Faults()
    for key, value in raw.items():
        if key not in checks:
            raise ValueError(f"unknown fault {key!r}")
        kinds, ok, want = checks[key]
        if type(value) not in kinds or not ok(value):
            raise ValueError(f"fault {key!r} must be {want}")
        setattr(faults, key, list(value) if key == "reject_ids" else value)
    return faults
