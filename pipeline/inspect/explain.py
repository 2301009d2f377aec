"""`ofsys-pipeline explain`: one cart's events, as decoded, and the Journey commands
each led to. The answer to "why did this shopper get (or not get) the e-mail?".

Reads only the cart's partition (the producers' partitioner on its id) of the input
and of the repartition topic, within the range; state as `reading.state_as_of` says.
Prints JSON lines (one per event) or, with `--format table`, a table for people.
"""

from __future__ import annotations

from typing import IO, Any

import orjson

from ..config import Settings
from ..journey.commands import Command
from ..source.partitioner import PARTITIONERS
from .fold import Fold, Step
from .reading import layout, partition_records, state_as_of
from .timerange import TimeRange, iso


def explain(
    settings: Settings, cart_id: str, span: TimeRange, fmt: str, *, out: IO[str], err: IO[str]
) -> int:
    found = layout(settings)
    partition = PARTITIONERS[settings.partitioner](cart_id.encode(), found.partitions)
    state, said = state_as_of(settings, partition, span.from_ms, found.changelog)
    err.write(f"cart {cart_id}: partition {partition} of {settings.topic}; state {said}\n")
    fold = Fold(settings, {partition: state}, found.partitions)
    shown = 0
    if fmt == "table":
        out.write(f"{'TIME (record)':<25} {'OFFSET':<10} {'EVENT':<22} {'ID':<14} OUTCOME\n")
    records = partition_records(settings, partition, span, found.repartition)
    for step in fold.run(partition, records, span.end_ms()):
        mine = [c for c in step.commands if c["cartId"] == cart_id]
        if step.cart_id != cart_id and not mine:
            continue  # another cart's event (it still moved the partition's state and time)
        shown += 1
        out.write(_table(step, mine) if fmt == "table" else _line(step, mine))
    if not shown:
        err.write(f"no events of cart {cart_id} {span.describe()}\n")
    return 0


def _line(step: Step, commands: list[Command]) -> str:
    msg = step.msg
    record: dict[str, Any] = {}
    if msg is not None:
        record["topic"], record["partition"] = msg.topic(), msg.partition()
        record["offset"], record["time"] = msg.offset(), iso(msg.timestamp()[1])
    record["outcome"] = step.outcome
    if step.detail is not None:
        record["detail"] = step.detail
    record["event"] = step.event
    record["commands"] = commands
    return orjson.dumps(record, default=str).decode() + "\n"


def _table(step: Step, commands: list[Command]) -> str:
    msg, event = step.msg, step.event or {}
    when, where = "", ""
    if msg is not None:
        when, where = iso(msg.timestamp()[1]), f"{msg.partition()}@{msg.offset()}"
        if msg.topic().endswith(".repartition"):
            where = f"r{where}"
    outcome = step.outcome + (f" ({step.detail})" if step.detail else "")
    lines = [
        f"{when:<25} {where:<10} {event.get('name', '-')!s:<22} "
        f"{event.get('id', '-')!s:<14} {outcome}"
    ]
    for command in commands:
        args = orjson.dumps(command["args"]).decode()
        lines.append(f"{'':<25} -> {command['id']}  {command['call']}  {args}")
    return "\n".join(lines) + "\n"
