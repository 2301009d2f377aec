"""The Journey contract as types: one command, and the table of calls.

`Command` is a TypedDict, so it is still a plain dict at run time (orjson encodes it
as it is, the hot path builds it with a literal). `CALLS` is the one table of call
names and their required args, each of a `Kind` (text: a non-empty string; number:
an int or float; quantity: an int >= 0). Invariant: it is the only such table; the
metric labels (`CALL_NAMES`), the emulator's validation and the tests read it
(docs/journey-contract.md, "The calls").
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Kind = Literal["text", "number", "quantity"]


class Command(TypedDict):
    """One Journey command: `id` deterministic, `ts` the source event's time (ms)."""

    id: str
    ts: int
    cartId: str | None
    email: str | None
    call: str
    args: dict[str, Any]


# call -> its required args, in the contract's order, with the kind each must be
CALLS: dict[str, tuple[tuple[str, Kind], ...]] = {
    "Track": (("f_EMail", "text"),),
    "ECommerce.ProductView": (("idProduct", "text"),),
    "ECommerce.AddCart": (("idCart", "text"), ("TotalPrice", "number")),
    "ECommerce.UpdateCart": (("idCart", "text"), ("TotalPrice", "number")),
    "ECommerce.AddCartItem": (("idCart", "text"), ("idProduct", "text"), ("quantity", "quantity")),
    "ECommerce.RemoveCartItem": (("idCart", "text"), ("idProduct", "text")),
    "ECommerce.SubmitCart": (("idCart", "text"),),
    "ECommerce.AddTransaction": (("idTransaction", "text"),),
    "ECommerce.AddItem": (
        ("idTransaction", "text"),
        ("idProduct", "text"),
        ("quantity", "quantity"),
    ),
    "ECommerce.SubmitTransaction": (("idTransaction", "text"),),
    "Trigger": (("name", "text"),),
}
CALL_NAMES = tuple(CALLS)
