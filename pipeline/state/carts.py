"""Carts: each cart's true state and what Journey last received of it; net changes.

Owns the `c<cart id>` records: 8 bytes of big-endian activity time, the email Journey
was told for the cart if any, then JSON (see cart.py); a cart is a `Cart` while in use,
its record bytes while idle (`compact()`). A cart's identity is part of it: it lives,
expires and is erased with the cart.
Invariants: a cart holds at most `MAX_CART_LINES` lines (give or take one added to an
idle cart), so its record stays far below RECORD_BUDGET; `version` counts the net
changes sent and survives a transaction, so ids `<cart id>@<version>.<digest>/<n>` never
repeat; a cart is forgotten, with a tombstone, `retention_ms` after its last activity.
The `Cart` object and its record form live in `cart` (re-exported here).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidEventError
from ..journey.commands import Command
from ..source.changes import Line
from ..source.identity import email_hash
from .cart import Cart, cart_email, cart_ms, same
from .compose import command, digest, money, put
from .records import Record, key

PREFIX = b"c"
MAX_CART_LINES = 500  # a cart's record stays far below RECORD_BUDGET
COMPACT_EVERY = 30  # windows between compaction passes (about 30 s at the default window)
COMPACT_RECENT_MAX = 10_000  # or sooner, when this many carts were used since the last pass
# the pages of carts kept compact (cart.py, `Cart.page`), so that a page showing such a
# cart as it was is still not read again; bounded (emptied when full: a page forgotten
# only costs reading it again): an int and a dict entry per cart, 4.2 MiB when full
PAGES_MAX = 65_536

__all__ = [
    "COMPACT_EVERY",
    "MAX_CART_LINES",
    "PREFIX",
    "Cart",
    "Carts",
    "cart_email",
    "cart_ms",
    "net_change",
]


def net_change(cart_id: str, cart: Cart, out: list[Command]) -> None:
    """The cart's change against what Journey holds, if any: AddCart or UpdateCart, an
    AddCartItem per new or changed line (absolute quantity), a RemoveCartItem per line
    that left, SubmitCart; ids `<cart id>@<version>.<digest of the change>/<n>`."""
    if cart.synced and cart.created:
        return  # nothing changed since Journey got it (a replayed page view, say)
    total = money(cart.total)
    sent, lines = cart.sent_lines, cart.lines
    changed: list[tuple[str, Line]] = []
    removed: list[str] = []
    if lines is not sent:  # else no line changed: only the total or the step can have
        kept = 0  # lines Journey holds under the same product id
        for pid, line in lines.items():
            held = sent.get(pid)
            if held is not None:
                kept += 1
            if not same(held, line):
                changed.append((pid, line))
        if kept < len(sent):  # some line Journey holds left the cart
            removed = [pid for pid in sent if pid not in lines]
    if not cart.created and not lines:
        return  # an empty cart Journey does not know is no news
    if (
        cart.created
        and not changed
        and not removed
        and total == cart.sent_total
        and cart.step == cart.sent_step
    ):
        cart.lines = sent  # the same lines again (a page view, say): one dict again
        cart.sent(total)
        return
    calls: list[tuple[str, dict[str, Any]]] = [
        (
            "ECommerce.UpdateCart" if cart.created else "ECommerce.AddCart",
            put({"idCart": cart_id, "TotalPrice": total}, "status", cart.step),
        )
    ]
    for pid, line in changed:
        args = {"idCart": cart_id, "idProduct": pid, "quantity": line.quantity}
        put(args, "productName", line.name)
        put(args, "priceunit", line.price)
        calls.append(("ECommerce.AddCartItem", args))
    for pid in removed:
        calls.append(("ECommerce.RemoveCartItem", {"idCart": cart_id, "idProduct": pid}))
    calls.append(("ECommerce.SubmitCart", {"idCart": cart_id}))
    ts, email = cart.ts, cart.email
    cart.version += 1
    prefix = f"{cart_id}@{cart.version}.{digest((ts, email, calls))}/"
    for n, (call, args) in enumerate(calls):
        out.append(command(prefix + str(n), ts, cart_id, email, call, args))
    cart.sent(total)


class Carts:
    """The partition's carts, those changed in the current window (`dirty`), and those
    changed since the last `changes()` (`touched`)."""

    prefix = PREFIX  # of its changelog keys
    __slots__ = (
        "_calls",
        "_previous",
        "_recent",
        "carts",
        "dirty",
        "pages",
        "retention_ms",
        "touched",
    )

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.carts: dict[str, Cart | bytes] = {}  # bytes: compact, idle since a pass
        self.dirty: dict[str, Cart] = {}  # net change not yet sent
        self.touched: set[str] = set()  # record not yet written
        # carts that may be objects: used since the last compaction pass, and in the
        # interval before it; every other cart is compact (bytes)
        self._recent: set[str] = set()
        self._previous: set[str] = set()
        self._calls = 0
        self.pages: dict[str, int] = {}  # compact cart id -> its page (PAGES_MAX)

    def check_room(self, cart_id: str, product_id: str) -> None:
        """Past MAX_CART_LINES lines, an added line is dead-lettered before it changes
        anything."""
        cart = self.carts.get(cart_id)
        if (
            isinstance(cart, Cart)
            and len(cart.lines) >= MAX_CART_LINES
            and product_id not in cart.lines
        ):
            raise InvalidEventError(
                "product.id",
                reason="invalid-value",
                detail=f"the cart already has {MAX_CART_LINES} lines",
            )

    def held(self, cart_id: str) -> Cart | None:
        """The cart as an object (parsed from its compact form if need be), or None."""
        held = self.carts.get(cart_id)
        if type(held) is not bytes:
            return held  # type: ignore[return-value]
        cart = self.carts[cart_id] = Cart.load(held)
        cart.record = held  # unless it changes, a later pass keeps these bytes again
        cart.page = self.pages.pop(cart_id, 0)
        self._recent.add(cart_id)
        return cart

    def page(self, cart_id: str) -> int:
        """The page the cart shows (normalise.Pages): 0 for a cart not held; a compact
        cart's is kept beside it (PAGES_MAX)."""
        cart = self.carts.get(cart_id)
        if cart is None:
            return 0
        if type(cart) is bytes:
            return self.pages.get(cart_id, 0)
        return cart.page  # type: ignore[union-attr]

    def email(self, cart_id: str | None) -> str | None:
        """The email Journey was told for the cart (None for no cart, or none told)."""
        cart = self.carts.get(cart_id) if cart_id is not None else None
        return None if cart is None else cart_email(cart)

    def identify(self, cart_id: str, email: str, ts: int) -> None:
        """Journey is told `email` for the cart (a new, empty one at `ts` if need be); a
        compact cart stays compact."""
        held = self.carts.get(cart_id)
        cart = Cart.load(held) if type(held) is bytes else held
        if cart is None:
            cart = self.carts[cart_id] = Cart()
            cart.ts = ts
        cart.email = email  # type: ignore[union-attr]
        cart.record = None  # type: ignore[union-attr]
        if type(held) is bytes:
            self.carts[cart_id] = cart.dump()  # type: ignore[union-attr]
        self.touched.add(cart_id)

    def named(self, email_sha256: str) -> set[str]:
        """The carts whose email has this hash (a forget request names it by hash)."""
        return {
            cart_id
            for cart_id, cart in self.carts.items()
            if (email := cart_email(cart)) is not None and email_hash(email) == email_sha256
        }

    def open(self, cart_id: str, ts: int) -> Cart:
        """The cart an event at `ts` changes (a new one if need be), marked dirty."""
        cart = self.held(cart_id)
        if cart is None:
            cart = self.carts[cart_id] = Cart()
        cart.ts = ts
        self.dirty[cart_id] = cart
        self.touched.add(cart_id)
        return cart

    def close(self, cart_id: str) -> None:
        """A transaction closed the cart (if the partition holds it)."""
        cart = self.held(cart_id)
        if cart is not None:
            cart.close()
            self.touched.add(cart_id)

    def drop(self, cart_id: str) -> list[Record]:
        """Erase the cart (a forget request): its tombstone, if the partition held it."""
        self.dirty.pop(cart_id, None)
        self.touched.discard(cart_id)
        self.pages.pop(cart_id, None)
        self._recent.discard(cart_id)
        self._previous.discard(cart_id)
        if self.carts.pop(cart_id, None) is None:
            return []
        return [(key(PREFIX, cart_id), None)]

    def changes(self) -> list[Record]:
        """Records of the carts touched since the last call; every COMPACT_EVERY calls
        (or when many carts were used, or when none was: a partition gone quiet after a
        catch-up holds its carts compact two windows later) a compaction pass."""
        carts = self.carts
        records: list[Record] = []
        quiet = not self.touched and bool(self._recent or self._previous)
        for cart_id in self.touched:
            cart = carts.get(cart_id)
            if isinstance(cart, Cart):
                value = cart.record
                # unchanged but for its activity time (a page showing it as it is): the
                # record written before, with the new time, and not encoded again
                if value is None:
                    value = cart.dump()
                elif cart_ms(value) != cart.ts:
                    value = cart.ts.to_bytes(8, "big") + value[8:]
                cart.record = value
                records.append((key(PREFIX, cart_id), value))
            else:
                records.append((key(PREFIX, cart_id), cart))
        self._recent |= self.touched
        self.touched.clear()
        self._calls += 1
        if quiet or self._calls % COMPACT_EVERY == 0 or len(self._recent) > COMPACT_RECENT_MAX:
            self.compact()
        return records

    def compact(self) -> None:
        """Keep carts idle since the last pass in their compact form (a third of the
        memory); carts in use stay objects, so a busy cart is not re-parsed per window.
        A pass looks only at the carts used in the interval before the last one (the
        only other objects): its cost follows the traffic, not the carts held. A cart not
        used since holds the record last written for it (every change to a cart marks
        it touched, and a touched cart waits for its record), kept, not encoded again."""
        recent, dirty, touched, carts = self._recent, self.dirty, self.touched, self.carts
        pages = self.pages
        for cart_id in self._previous:
            cart = carts.get(cart_id)
            if (
                isinstance(cart, Cart)
                and cart_id not in recent
                and cart_id not in dirty
                and cart_id not in touched
            ):
                record = cart.record
                carts[cart_id] = record if record is not None else cart.dump()
                if cart.page:
                    if len(pages) >= PAGES_MAX:
                        pages.clear()
                    pages[cart_id] = cart.page
        self._previous, self._recent = recent, set()

    def load(self, name: str, value: bytes | None) -> int:
        self.pages.pop(name, None)
        if value is None:
            self.carts.pop(name, None)
            return 0
        self.carts[name] = value
        return cart_ms(value)

    def expire(self, now_ms: int) -> list[Record]:
        """Tombstones for carts idle longer than the retention (with them, their email)."""
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for cart_id in [c for c, cart in self.carts.items() if cart_ms(cart) < before]:
            del self.carts[cart_id]
            self.touched.discard(cart_id)
            self.pages.pop(cart_id, None)
            gone.append((key(PREFIX, cart_id), None))
        return gone

    def snapshot(self) -> dict[str, list[str | None]]:
        """Each cart as [its email, its record in hex]: the email readable, so a check
        that a forgotten shopper is gone can see it."""
        return {
            cid: [cart_email(cart), (cart if isinstance(cart, bytes) else cart.dump()).hex()]
            for cid, cart in self.carts.items()
        }
