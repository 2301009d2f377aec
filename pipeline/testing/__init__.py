"""Fakes for driving the run loop without a broker or Journey (Bytewax's manner).

Shipped in the package, apart from the core: the runtime never imports this package.
Each fake implements one `Protocol` of `pipeline.runtime.ports`:

- `FakeConsumer`: topics of partitions in memory, positions, pause/resume/seek,
  commit (with injectable per-partition errors) and scripted rebalances (assign, revoke,
  lost), run inside `consume()` as librdkafka runs its callbacks inside a poll;
- `FakeOutputs`: records kept per topic, pending until `flush`, whose result can be
  held back (`hold`) to play a broker that has not taken them yet;
- `ScriptedJourney`: Journey answering from a script of statuses;
- `FakeWorker`: the delivery worker, synchronous, over a `ScriptedJourney`;
- `FakeStore`: the changelog, written through `FakeOutputs` (so durable only once
  flushed) and restored from what was flushed;
- `FakeClock`: monotonic and wall time that move only when told (or slept).

`fake_parts(settings, metrics)` puts them together as the loop's `Parts`.

This package owns the public names only, re-exported from its modules: `kafka`
(consumer and producer), `journey` (client and worker), `store` (changelog), `clock`
and `parts` (`fake_parts`, `Fakes`).
"""

from .clock import FakeClock
from .journey import FakeWorker, ScriptedJourney
from .kafka import (
    OFFSET_INVALID,
    CommitResult,
    FakeConsumer,
    FakeMessage,
    FakeOutputs,
    Produced,
    Source,
)
from .parts import Fakes, fake_parts
from .store import FakeStore

__all__ = [
    "OFFSET_INVALID",
    "CommitResult",
    "FakeClock",
    "FakeConsumer",
    "FakeMessage",
    "FakeOutputs",
    "FakeStore",
    "FakeWorker",
    "Fakes",
    "Produced",
    "ScriptedJourney",
    "Source",
    "fake_parts",
]
