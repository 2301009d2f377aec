"""Triggers the pipeline detects itself: abandoned carts and browse abandonment.

Timers are kept per partition beside its state (one heap entry per cart or visitor
at a time; activity only moves the due time, checked when the entry comes up). A
trigger fires at most once per quiet period: the cart remembers the activity time it
fired for (`Cart.abandoned_at`), in its changelog record, so neither a restart nor a
rebalance fires it twice or loses it.

Time: a partition's clock is the wall clock when the consumer has read its partitions
to the end, else the newest event time it has processed (its stream time). So a
lagging consumer that catches up fires what fell due, in order, and never fires for a
cart whose later events are still unread: those carry event times past the cart's
due time, and the clock does not pass them until they are read.
"""

from __future__ import annotations

import heapq
from typing import Any, NamedTuple

from ..journey.commands import Command

CART, BROWSE = 0, 1
MAX_VIEWED = 10


class TriggerSettings(NamedTuple):
    cart_after_ms: int
    grace_ms: int
    browse_after_ms: int  # 0: browse abandonment off


class Timers:
    """Due times, one entry per (kind, key) at a time."""

    __slots__ = ("_armed", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._armed: set[tuple[int, str]] = set()

    def arm(self, kind: int, key: str, due_ms: int) -> None:
        if (kind, key) not in self._armed:
            self._armed.add((kind, key))
            heapq.heappush(self._heap, (due_ms, kind, key))

    def pop_due(self, now_ms: int) -> tuple[int, int, str] | None:
        """The next entry due by `now_ms`, disarmed; the caller re-arms it if needed."""
        if self._heap and self._heap[0][0] <= now_ms:
            entry = heapq.heappop(self._heap)
            self._armed.discard((entry[1], entry[2]))
            return entry
        return None

    def __len__(self) -> int:
        return len(self._heap)


def trigger_record(command: Command, fired_ms: int) -> dict[str, Any]:
    """The triggers topic's Avro record (schemas/trigger.v1.avsc) for a Trigger command."""
    args = command["args"]
    return {
        "id": command["id"],
        "name": args["name"],
        "cartId": command["cartId"],
        "email": args["email"],
        "totalPrice": args.get("TotalPrice"),
        "lastActivity": args["lastActivity"],
        "firedAt": fired_ms,
        "items": [
            {
                "idProduct": item["idProduct"],
                "productName": item.get("productName"),
                "priceunit": item.get("priceunit"),
                "quantity": item["quantity"],
            }
            for item in args.get("items", ())
        ],
        "viewedProducts": args.get("viewedProducts", []),
    }
