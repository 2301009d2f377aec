"""`ofsys-pipeline replay`: re-send a time range's Journey commands, same ids.

For Journey's own outage, a restored backup or a new account being backfilled: the
range's records run through the service's code (`fold.Fold`), and the commands go to
Journey through the pipeline's own batching and response table (`journey.batch`,
`journey.delivery.Delivery`: retries with backoff, Retry-After honoured, named
rejections counted, never dropped). Journey keeps once what it already holds (same ids,
same contents) and takes back what it lost. Nothing is committed and nothing is
written to Kafka. `--cart` keeps the partitions of those carts and their commands only.
"""

from __future__ import annotations

import time
from typing import IO, Any

import orjson

from ..config import Settings
from ..journey.batch import batches
from ..journey.commands import Command
from ..journey.delivery import Delivery, JourneyClient
from ..metrics import Metrics
from ..source.partitioner import PARTITIONERS
from .fold import Fold
from .reading import layout, partition_records, state_as_of
from .timerange import TimeRange, iso

SEND_EVERY = 5_000  # commands held before they are sent: memory does not follow the range


class _Sender:
    """Delivers in order, or (dry run) prints what it would deliver; counts."""

    def __init__(self, settings: Settings, dry_run: bool, out: IO[str], err: IO[str]) -> None:
        self._settings = settings
        self._dry_run = dry_run
        self._out = out
        self._err = err
        self.sent = self.rejected = 0
        self._client: JourneyClient | None = None
        self._delivery: Delivery | None = None
        if not dry_run:
            self._client = JourneyClient(
                settings.journey_url, settings.account_key, settings.journey_timeout_s
            )
            self._delivery = Delivery(
                self._client,
                Metrics(),
                max_backoff_s=settings.retry_max_backoff_s,
                wait=time.sleep,
                dead_letter=self._rejected,
            )

    def _rejected(self, command: Command, message: str) -> None:
        self.rejected += 1
        self._err.write(f"rejected {command['id']} ({command['call']}): {message}\n")

    def send(self, commands: list[Command]) -> None:
        if self._delivery is None:
            for command in commands:
                self._out.write(orjson.dumps(command).decode() + "\n")
            return
        settings = self._settings
        for batch in batches(commands, settings.batch_max_commands, settings.batch_max_bytes):
            self._delivery.deliver(batch)
            self.sent += len(batch)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def replay(
    settings: Settings,
    span: TimeRange,
    carts: list[str],
    dry_run: bool,
    *,
    out: IO[str],
    err: IO[str],
) -> int:
    found = layout(settings)
    partition_of = PARTITIONERS[settings.partitioner]
    wanted = set(carts)
    partitions = sorted({partition_of(c.encode(), found.partitions) for c in wanted})
    sender = _Sender(settings, dry_run, out, err)
    events = commands = 0
    states: dict[str, str] = {}
    try:
        for partition in partitions or range(found.partitions):
            state, said = state_as_of(settings, partition, span.from_ms, found.changelog)
            states[str(partition)] = said
            err.write(f"partition {partition}: state {said}\n")
            fold = Fold(settings, {partition: state}, found.partitions)
            pending: list[Command] = []
            records = partition_records(settings, partition, span, found.repartition)
            for step in fold.run(partition, records, span.end_ms()):
                events += step.msg is not None
                made = step.commands
                pending.extend(c for c in made if not wanted or c["cartId"] in wanted)
                if len(pending) >= SEND_EVERY:
                    commands += len(pending)
                    sender.send(pending)
                    pending = []
            commands += len(pending)
            sender.send(pending)
    finally:
        sender.close()
    if not events:
        err.write(f"no records in {settings.topic} {span.describe()}: nothing to replay\n")
    summary: dict[str, Any] = {
        "from": None if span.from_ms is None else iso(span.from_ms),
        "to": None if span.to_ms is None else iso(span.to_ms),
        "events": events,
        "commands": commands,
        "sent": sender.sent,
        "accepted": sender.sent - sender.rejected,
        "rejected": sender.rejected,
        "dry_run": dry_run,
        "state": states,
    }
    out.write(orjson.dumps(summary).decode() + "\n")
    return 0
