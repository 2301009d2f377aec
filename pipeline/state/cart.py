"""Cart: one cart's true state and what Journey last received of it, and its record form.

Owns the `Cart` object and its changelog value (`Cart.dump` / `Cart.load`): 8 bytes of
big-endian activity time; if Journey was told the cart's email, the byte 0xFF, its
length in two bytes and the email in UTF-8; then JSON. The email rides in the cart's
own record (one record, one dict entry per cart): a record without it, as written
before, reads as a cart with no email. `cart_ms` and `cart_email` read a cart kept as an
object or as compact bytes without parsing it.
What Journey holds of the lines (`sent_lines`) shares the `Line` objects of `lines`: a
line Journey holds is never changed in place (`add` and `remove` replace it, and copy the
dict while the two are one), so a net change compares by identity first and only lines
that changed are compared field by field; after a send the two dicts are one again. (The
JSON of the lines Journey holds was also kept, encoded once: it cost 41-47 MiB of RSS at
1,000,000 carts caught up, docs/benchmarks.md, 2026-12-07 (day), WM1 against WM3, W3.)
"""

from __future__ import annotations

from typing import Any

import orjson

from ..source.changes import Line
from .compose import money

_EMAIL = 0xFF  # byte 8 of a record that carries the email (no JSON text starts with it)


def same(held: Line | None, line: Line) -> bool:
    """Journey holds `line` as it is (`held`: the line as it was sent, if it was)."""
    return held is line or (
        held is not None
        and held.quantity == line.quantity
        and held.price == line.price
        and held.name == line.name
    )


def same_lines(held: dict[str, Line], lines: dict[str, Line]) -> bool:
    """The two dicts hold the same lines (`same` for each, and no other)."""
    return held is lines or (
        len(held) == len(lines) and all(same(held.get(pid), line) for pid, line in lines.items())
    )


class Cart:
    """A cart's true state (`lines`, `total`, `step`) and what Journey last received."""

    __slots__ = (
        "abandoned_at",
        "created",
        "email",
        "lines",
        "page",
        "record",
        "sent_lines",
        "sent_step",
        "sent_total",
        "step",
        "synced",
        "total",
        "ts",
        "version",
    )

    def __init__(self) -> None:
        self.lines: dict[str, Line] = {}
        self.total = 0.0
        self.step: int | None = None
        self.ts = 0
        self.version = 0
        self.created = False
        self.email: str | None = None  # the email Journey was told (by a Track) for it
        # what Journey holds of each line: the very dict `lines` after a send (see module)
        self.sent_lines: dict[str, Line] = {}
        self.sent_total: float | None = None
        self.sent_step: int | None = None
        self.abandoned_at = 0  # the activity time an AbandonedCart trigger fired for
        # Journey holds the cart as it is, known without comparing its lines: set when a
        # net change was sent (or a record said so), cleared by every change to it
        self.synced = False
        # its changelog value as last written (or read), still the cart but for its
        # activity time (the first 8 bytes): what the next record and a compaction pass
        # reuse instead of encoding the cart again; None once anything else changed
        self.record: bytes | None = None
        # the page whose items `lines` equal (normalise.Pages), 0 for none known: kept
        # in memory only, and cleared by every change to the lines
        self.page = 0

    def dump(self) -> bytes:
        """The cart as its changelog value (see the module), also the form an idle cart
        is kept in (a third of the memory of the objects)."""
        lines = [[pid, line.name, line.price, line.quantity] for pid, line in self.lines.items()]
        sent: Any = 0  # Journey holds the cart as it is: the usual case, said in a byte
        if not self.synced and not self._in_sync():
            sent = [
                self.sent_total,
                self.sent_step,
                [[pid, [ln.quantity, ln.price, ln.name]] for pid, ln in self.sent_lines.items()],
            ]
        head = self.ts.to_bytes(8, "big")
        if self.email is not None:
            email = self.email.encode()
            head += b"\xff" + len(email).to_bytes(2, "big") + email
        return head + orjson.dumps(
            [self.version, self.created, self.total, self.step, lines, sent, self.abandoned_at]
        )

    def _in_sync(self) -> bool:
        return (
            self.sent_total == money(self.total)
            and self.sent_step == self.step
            and same_lines(self.sent_lines, self.lines)
        )

    @classmethod
    def load(cls, data: bytes) -> Cart:
        cart = cls()
        body = 8
        if data[8] == _EMAIL:
            body = 11 + int.from_bytes(data[9:11], "big")
            cart.email = data[11:body].decode()
        version, created, total, step, lines, sent, abandoned_at = orjson.loads(data[body:])
        cart.abandoned_at = abandoned_at
        cart.ts = int.from_bytes(data[:8], "big")
        cart.version, cart.created, cart.total, cart.step = version, created, total, step
        cart.lines = {pid: Line(name, price, quantity) for pid, name, price, quantity in lines}
        if sent == 0:
            cart.synced = True
            cart.sent_total, cart.sent_step = money(total), step
            cart.sent_lines = cart.lines
        else:
            cart.sent_total, cart.sent_step = sent[0], sent[1]
            # records from before prices were tracked hold a bare quantity: unknown
            # price and name, so the line is sent again on its next change
            cart.sent_lines = {
                pid: Line(None, None, held)
                if type(held) is int
                else Line(held[2], held[1], held[0])  # [quantity, price, name]
                for pid, held in sent[2]
            }
        return cart

    def close(self) -> None:
        """A transaction closed the cart: forget its content, keep its version so the
        next cart under the same id gets new command ids, and its email (Journey keeps
        the identity)."""
        self.record = None
        self.synced = False
        self.page = 0
        self.lines = {}
        self.total = 0.0
        self.step = None
        self.created = False
        self.sent_lines = {}
        self.sent_total = None
        self.sent_step = None

    def replace(
        self, total: float | None, step: int | None, lines: dict[str, Line] | None, page: int = 0
    ) -> None:
        """The cart as a page showed it; `lines` is the snapshot's own dict (normalise
        left its zero-quantity lines out), taken over, not copied, or None for the lines
        as they are (the page's items were those of `page`, the page the cart shows). A
        page showing the cart as it is (most page views) changes nothing: the cart keeps
        its lines (still shared with what Journey holds), its sync and its record."""
        if lines is None:
            lines = self.lines
        if total is None:
            total = sum((line.price or 0.0) * line.quantity for line in lines.values())
        self.page = page
        if total == self.total and step == self.step and same_lines(self.lines, lines):
            return
        self.record = None
        self.synced = False
        self.lines = lines
        self.total = total
        self.step = step

    def sent(self, total: float) -> None:
        """Journey now holds the cart as it is."""
        self.record = None  # a cart still dirty when its record was written changed since
        self.created = True
        self.sent_lines = self.lines
        self.sent_total = total
        self.sent_step = self.step
        self.synced = True

    def _own(self) -> dict[str, Line]:
        """`lines`, no longer the dict Journey's lines are (copied if it was)."""
        lines = self.lines
        if lines is self.sent_lines:
            lines = self.lines = dict(lines)
        return lines

    def add(self, product_id: str, quantity: int, name: str | None, price: float | None) -> None:
        if quantity <= 0:
            return
        self.record = None
        self.synced = False
        self.page = 0
        lines = self._own()
        line = lines.get(product_id)
        if line is None:
            line = lines[product_id] = Line(name, price, quantity)
        elif line is self.sent_lines.get(product_id):  # Journey holds it: a new line
            line = lines[product_id] = Line(
                line.name if name is None else name,
                line.price if price is None else price,
                line.quantity + quantity,
            )
        else:
            line.name = line.name if name is None else name
            line.price = line.price if price is None else price
            line.quantity += quantity
        if line.price is not None:
            self.total += line.price * quantity

    def remove(self, product_id: str, quantity: int | None) -> None:
        line = self.lines.get(product_id)
        if line is None:
            return
        self.record = None
        self.synced = False
        self.page = 0
        lines = self._own()
        taken = line.quantity if quantity is None else min(max(quantity, 0), line.quantity)
        if taken == line.quantity:
            del lines[product_id]
        elif line is self.sent_lines.get(product_id):  # Journey holds it: a new line
            lines[product_id] = Line(line.name, line.price, line.quantity - taken)
        else:
            line.quantity -= taken
        if line.price is not None:
            self.total -= line.price * taken


def cart_ms(cart: Cart | bytes) -> int:
    """A cart's last activity time, kept or compact."""
    return int.from_bytes(cart[:8], "big") if type(cart) is bytes else cart.ts  # type: ignore[union-attr]


def cart_email(cart: Cart | bytes) -> str | None:
    """The email Journey was told for a cart, kept or compact (not parsed to read it)."""
    if type(cart) is not bytes:
        return cart.email  # type: ignore[union-attr]
    if cart[8] != _EMAIL:
        return None
    return cart[11 : 11 + int.from_bytes(cart[9:11], "big")].decode()
