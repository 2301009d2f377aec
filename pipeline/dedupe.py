"""Partition-local state: carts, replays, transactions, identities -> net Journey commands.

One `PartitionState` per assigned input partition (carts are keyed by cart id, so a
cart lives on one partition). `apply()` folds a Change into the state; commands that
stand for a single event (Track, ProductView, transactions) go to the outbox at once,
while cart changes only mark the cart dirty. `flush()` then emits, per dirty cart, one
net change against what Journey already has: AddCart or UpdateCart, AddCartItem per
line that is new or changed (absolute quantity), RemoveCartItem per line that left,
SubmitCart. A cart that ends the window as it began sends nothing.

Command ids are deterministic so a replay after a crash re-sends the same ids:
`<event id>/<n>` for per-event commands, `<cart id>@<version>/<n>` for a cart's net
change, the version counting the net changes sent for that cart.
"""

from __future__ import annotations

from typing import Any

from .normalise import Change, Line, LineChange, PageView, ProductView, Purchase

Command = dict[str, Any]


def _command(  # noqa: PLR0917  (called on the hot path: positional is cheaper)
    cid: str, ts: int, cart_id: str | None, email: str | None, call: str, args: dict[str, Any]
) -> Command:
    return {"id": cid, "ts": ts, "cartId": cart_id, "email": email, "call": call, "args": args}


def _put(args: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Optional arguments without a value are left out, never sent as null."""
    if value is not None:
        args[key] = value
    return args


def _money(value: float) -> float:
    return round(value, 2)


class Cart:
    """A cart's true state (`lines`, `total`, `step`) and what Journey last received."""

    __slots__ = (
        "created",
        "lines",
        "sent_lines",
        "sent_step",
        "sent_total",
        "step",
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
        self.sent_lines: dict[str, int] = {}
        self.sent_total: float | None = None
        self.sent_step: int | None = None

    def close(self) -> None:
        """A transaction closed the cart: forget its content, keep its version so the
        next cart under the same id gets new command ids."""
        self.lines = {}
        self.total = 0.0
        self.step = None
        self.created = False
        self.sent_lines = {}
        self.sent_total = None
        self.sent_step = None

    def replace(self, total: float | None, step: int | None, lines: dict[str, Line]) -> None:
        self.lines = {pid: line for pid, line in lines.items() if line.quantity > 0}
        self.total = (
            total
            if total is not None
            else sum((line.price or 0.0) * line.quantity for line in self.lines.values())
        )
        self.step = step

    def add(self, product_id: str, quantity: int, name: str | None, price: float | None) -> None:
        if quantity <= 0:
            return
        line = self.lines.get(product_id)
        if line is None:
            line = self.lines[product_id] = Line(name, price, 0)
        else:
            line.name = name if name is not None else line.name
            line.price = price if price is not None else line.price
        line.quantity += quantity
        if line.price is not None:
            self.total += line.price * quantity

    def remove(self, product_id: str, quantity: int | None) -> None:
        line = self.lines.get(product_id)
        if line is None:
            return
        taken = line.quantity if quantity is None else min(max(quantity, 0), line.quantity)
        line.quantity -= taken
        if line.quantity == 0:
            del self.lines[product_id]
        if line.price is not None:
            self.total -= line.price * taken


class PartitionState:
    """Everything one input partition needs to turn its events into exactly-right commands."""

    def __init__(self) -> None:
        self.carts: dict[str, Cart] = {}
        self.seen: dict[str, int] = {}  # event id -> event time, for replays
        self.orders: dict[str, int] = {}  # order id -> event time, transactions sent once
        self.identities: dict[str, str] = {}  # cart id (else the email) -> email sent by Track
        self.dirty: dict[str, Cart] = {}
        self.outbox: list[Command] = []

    def apply(self, change: Change) -> bool:
        """Fold one event in; False when it was a replay (or a repeated transaction)."""
        event_id = change.event_id
        if event_id in self.seen:
            return False
        self.seen[event_id] = change.ts
        n = self._identify(change)
        if type(change) is LineChange:
            cart = self._cart(change.cart_id, change.ts)
            if change.added:
                cart.add(
                    change.product_id,
                    1 if change.quantity is None else change.quantity,
                    change.name,
                    change.price,
                )
            else:
                cart.remove(change.product_id, change.quantity)
        elif type(change) is PageView:
            if change.snapshot is not None and change.cart_id is not None:
                snap = change.snapshot
                self._cart(change.cart_id, change.ts).replace(snap.total, snap.step, snap.lines)
        elif type(change) is ProductView:
            self._settle(change.cart_id)
            self.outbox.append(
                _command(
                    f"{event_id}/{n}",
                    change.ts,
                    change.cart_id,
                    self._email(change),
                    "ECommerce.ProductView",
                    {"idProduct": change.product_id},
                )
            )
        elif type(change) is Purchase:
            return self._purchase(change, n)
        return True

    def _identify(self, change: Change) -> int:
        """Track when a cart's (or a cartless visitor's) email is first known or changes."""
        email = change.email
        if email is None:
            return 0
        key = change.cart_id or email
        if self.identities.get(key) == email:
            return 0
        self.identities[key] = email
        self._settle(change.cart_id)
        self.outbox.append(
            _command(
                f"{change.event_id}/0",
                change.ts,
                change.cart_id,
                email,
                "Track",
                {"f_EMail": email},
            )
        )
        return 1

    def _settle(self, cart_id: str | None) -> None:
        """Before a per-event command of a cart leaves, its pending cart change leaves
        first, so Journey sees one cart's commands in the order of its events."""
        if cart_id is not None and cart_id in self.dirty:
            self._net_change(cart_id, self.dirty.pop(cart_id), self.outbox)

    def _email(self, change: Change) -> str | None:
        return self.identities.get(change.cart_id) if change.cart_id else change.email

    def _cart(self, cart_id: str, ts: int) -> Cart:
        cart = self.carts.get(cart_id)
        if cart is None:
            cart = self.carts[cart_id] = Cart()
        cart.ts = ts
        self.dirty[cart_id] = cart
        return cart

    def _purchase(self, p: Purchase, n: int) -> bool:
        if p.order_id in self.orders:
            return False
        self.orders[p.order_id] = p.ts
        email = self._email(p) or p.email
        cart_id = p.cart_id
        if cart_id is not None:
            self._settle(cart_id)  # Journey learns the cart's last state before it closes
            cart = self.carts.get(cart_id)
            if cart is not None:
                cart.close()
        order = p.order_id
        out = self.outbox
        out.append(
            _command(
                f"{p.event_id}/{n}",
                p.ts,
                cart_id,
                email,
                "ECommerce.AddTransaction",
                _put(
                    _put(
                        _put(
                            _put(
                                _put({"idTransaction": order}, "idCart", cart_id),
                                "affiliation",
                                p.affiliation,
                            ),
                            "revenue",
                            p.revenue,
                        ),
                        "tax",
                        p.tax,
                    ),
                    "shipping",
                    p.shipping,
                ),
            )
        )
        for product_id, line in p.lines:
            n += 1
            args = _put(
                {"idTransaction": order, "idProduct": product_id, "quantity": line.quantity},
                "idCart",
                cart_id,
            )
            _put(args, "productName", line.name)
            _put(args, "Price_unit", line.price)
            total = line.subtotal
            if total is None and line.price is not None:
                total = _money(line.price * line.quantity)
            _put(args, "Price_total", total)
            out.append(
                _command(f"{p.event_id}/{n}", p.ts, cart_id, email, "ECommerce.AddItem", args)
            )
        out.append(
            _command(
                f"{p.event_id}/{n + 1}",
                p.ts,
                cart_id,
                email,
                "ECommerce.SubmitTransaction",
                {"idTransaction": order},
            )
        )
        return True

    def _net_change(self, cart_id: str, cart: Cart, out: list[Command]) -> None:
        total = _money(cart.total)
        sent = cart.sent_lines
        changed = [
            (pid, line) for pid, line in cart.lines.items() if sent.get(pid) != line.quantity
        ]
        removed = [pid for pid in sent if pid not in cart.lines]
        if not cart.created and not cart.lines:
            return  # an empty cart Journey does not know is no news
        if (
            cart.created
            and not changed
            and not removed
            and total == cart.sent_total
            and cart.step == cart.sent_step
        ):
            return
        cart.version += 1
        prefix = f"{cart_id}@{cart.version}/"
        ts = cart.ts
        email = self.identities.get(cart_id)
        call = "ECommerce.UpdateCart" if cart.created else "ECommerce.AddCart"
        out.append(
            _command(
                prefix + "0",
                ts,
                cart_id,
                email,
                call,
                _put({"idCart": cart_id, "TotalPrice": total}, "status", cart.step),
            )
        )
        n = 1
        for pid, line in changed:
            args = {"idCart": cart_id, "idProduct": pid, "quantity": line.quantity}
            _put(args, "productName", line.name)
            _put(args, "priceunit", line.price)
            out.append(_command(prefix + str(n), ts, cart_id, email, "ECommerce.AddCartItem", args))
            n += 1
        for pid in removed:
            out.append(
                _command(
                    prefix + str(n),
                    ts,
                    cart_id,
                    email,
                    "ECommerce.RemoveCartItem",
                    {"idCart": cart_id, "idProduct": pid},
                )
            )
            n += 1
        out.append(
            _command(
                prefix + str(n), ts, cart_id, email, "ECommerce.SubmitCart", {"idCart": cart_id}
            )
        )
        cart.created = True
        cart.sent_lines = {pid: line.quantity for pid, line in cart.lines.items()}
        cart.sent_total = total
        cart.sent_step = cart.step

    def flush(self) -> list[Command]:
        """The window's commands in order: per-event ones first, then each cart's net change."""
        out = self.outbox
        self.outbox = []
        for cart_id, cart in self.dirty.items():
            self._net_change(cart_id, cart, out)
        self.dirty.clear()
        return out
