"""A reader of SiteEvent bodies written for this schema, not for any schema.

Why: on the hot path, decoding was a quarter of the loop thread's time with cavro, a
generic codec (docs/benchmarks.md, 2026-12-06 evening). This reader walks the two
layouts of `schemas/site_event` (v1 and v2, found by fingerprint) with no schema
interpreted at run time, and makes the events (event.py) straight from the bytes: the
values fastavro reads for the newest reader schema, with no dict in between. Compiled
with mypyc (wheels), the bench's consume + decode ceiling with the pipeline's decoder
rose 28 % over cavro's and the pipeline's rate 24-27 % (2026-12-07 in
docs/benchmarks.md); pure Python, it is slower, and the editable install's tests run it
to check what it reads.

It is only ever a fast path: a body it cannot read whole (truncated, a bad union
branch, bad UTF-8, bytes left over) gives None, and decode.py has fastavro read it
again, whose answer (the record or the error) is the one used. A schema version it
does not know (a new `schemas/` file, a registry writer) is not given to it at all.

A cart's line items are walked, not read (`Cart.items_raw`): most page views show a
cart as it was, and normalise.py knows that by the bytes' hash without making an item
(46 % of the heavy-carts bench's page views, counted outside the project's commands:
docs/benchmarks.md, 2026-12-07 (evening)). Walking checks their layout; their
strings' UTF-8 is checked when they are read (`read_items`, on `Cart.items()`), which
raises DecodeError("undecodable") with fastavro's message. So the one body read
differently from fastavro is a page view with no cart id whose items hold bad UTF-8: its
items are never read, and the page view is processed (a cart with no id is unusable
anyway) where fastavro would have dead-lettered it.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod

from ..errors import DecodeError
from .event import Cart, LineItem, Product, SiteEvent, Transaction, User

# The layouts this reader walks, by the schema's single-object fingerprint (CRC-64-AVRO
# of the Parsing Canonical Form): site_event v1 and v2. v2 adds `user.userId` and
# `cart.currency`; read from v1, they are None, as schema resolution makes them.
# tests/unit/test_site_reader.py fails when `schemas/` has a version not listed here.
V1 = bytes.fromhex("6f6a2f67caea9d50")
V2 = bytes.fromhex("46097ff088cf05af")
_READER = V2  # the events are those of this reader schema

_DOUBLE = struct.Struct("<d").unpack_from
# strings that repeat across events (event names, product ids and names, currencies)
# are decoded once and then handed out as the same str: no decode or new object per
# line, and the hash a dict lookup of it needs is computed once. Bounded: emptied when
# full (a shop's catalogue fits; a flood of distinct ids only costs the decode again).
WORDS_MAX = 16_384
_WORDS: dict[bytes, str] = {}  # one for every reader: the same product, the same str


class BodyReader(ABC):
    """A fast reader of one writer schema's bodies: the event, or None when it cannot
    read the body whole (the caller's fallback then reads it and says why). A base class
    and not a Protocol: compiled, a call through it is a native call."""

    @abstractmethod
    def read(self, value: bytes, start: int) -> SiteEvent | None: ...


class SiteEventReader(BodyReader):
    """Reads one SiteEvent layout. Not thread-safe: the cursor lives on the instance,
    so that a record costs no cursor object (each decoder owns its readers)."""

    __slots__ = ("_buf", "_pos", "_v2", "_words")

    def __init__(self, v2: bool) -> None:
        self._v2 = v2
        self._buf = b""
        self._pos = 0
        self._words = _WORDS  # see WORDS_MAX

    def read(self, value: bytes, start: int) -> SiteEvent | None:
        self._buf = value
        self._pos = start
        try:
            record = self._event()
            whole = self._pos == len(value)
        except Exception:  # truncated or corrupt: the fallback says which
            return None
        finally:
            self._buf = b""  # the record's bytes are not held past the call
        return record if whole else None

    def _long(self) -> int:
        """A zig-zag varint (Avro int and long); past the end, bytes indexing raises."""
        buf = self._buf
        pos = self._pos
        byte = buf[pos]
        pos += 1
        acc = byte & 0x7F
        shift = 7
        while byte & 0x80:
            if shift > 63:
                raise ValueError("varint longer than 64 bits")
            byte = buf[pos]
            pos += 1
            acc |= (byte & 0x7F) << shift
            shift += 7
        self._pos = pos
        return (acc >> 1) ^ -(acc & 1)

    def _raw(self) -> bytes:
        """An Avro string's bytes (not yet decoded)."""
        size = self._long()
        pos = self._pos
        end = pos + size
        if size < 0 or end > len(self._buf):
            raise ValueError("string past the end")
        self._pos = end
        return self._buf[pos:end]

    def _string(self) -> str:
        return self._raw().decode()

    def _word(self) -> str:
        """A string that repeats across events (see WORDS_MAX)."""
        raw = self._raw()
        words = self._words
        word = words.get(raw)
        if word is None:
            if len(words) >= WORDS_MAX:
                words.clear()
            word = words[raw] = raw.decode()
        return word

    def _opt_word(self) -> str | None:
        return self._word() if self._present() else None

    def _present(self) -> bool:
        """The branch of a ["null", T] union: False for null, True for T."""
        branch = self._long()
        if branch == 1:
            return True
        if branch == 0:
            return False
        raise ValueError(f"union branch {branch}")

    def _opt_string(self) -> str | None:
        return self._string() if self._present() else None

    def _opt_long(self) -> int | None:
        return self._long() if self._present() else None

    def _opt_double(self) -> float | None:
        if not self._present():
            return None
        pos = self._pos
        value: float = _DOUBLE(self._buf, pos)[0]  # struct.error past the end
        self._pos = pos + 8
        return value

    def _skip(self, size: int) -> None:
        end = self._pos + size
        if size < 0 or end > len(self._buf):
            raise ValueError("value past the end")
        self._pos = end

    def _items_raw(self) -> bytes:
        """A cart's lineItems array left unread: its bytes, walked (so a body that does
        not read whole is still found here) but with no value made of them."""
        start = self._pos
        count = self._long()
        while count != 0:
            if count < 0:
                count = -count
                self._long()
            for _ in range(count):
                # product: id, name (strings), unitSalePrice, unitPrice (doubles), each
                # a ["null", T] union; then quantity (long) and subtotal (double)
                for _field in range(2):
                    if self._present():
                        self._skip(self._long())
                for _field in range(2):
                    if self._present():
                        self._skip(8)
                if self._present():
                    self._long()
                if self._present():
                    self._skip(8)
            count = self._long()
        return self._buf[start : self._pos]

    def _product(self) -> Product:
        return Product(self._opt_word(), self._opt_word(), self._opt_double(), self._opt_double())

    def _line_items(self) -> list[LineItem]:
        items: list[LineItem] = []
        count = self._long()
        while count != 0:
            if count < 0:  # a block with its byte size: the size is not needed
                count = -count
                self._long()
            for _ in range(count):
                items.append(LineItem(self._product(), self._opt_long(), self._opt_double()))
            count = self._long()
        return items

    def _event(self) -> SiteEvent:
        v2 = self._v2
        event_id = self._string()
        name = self._word()
        timestamp = self._long()
        user: User | None = None
        if self._present():
            email = self._opt_string()
            user = User(email, self._opt_string() if v2 else None)
        cart: Cart | None = None
        if self._present():
            cart_id = self._opt_string()
            total = self._opt_double()
            currency = self._opt_word() if v2 else None
            step = self._opt_long()
            cart = Cart(cart_id, total, currency, step, None, self._items_raw())
        product = self._product() if self._present() else None
        quantity = self._opt_long()
        transaction: Transaction | None = None
        if self._present():
            transaction = Transaction(
                self._opt_string(),
                self._opt_string(),
                self._opt_double(),
                self._opt_double(),
                self._opt_double(),
                self._opt_word(),  # affiliation
                self._line_items(),
            )
        return SiteEvent(event_id, name, timestamp, user, cart, product, quantity, transaction)


def read_items(raw: bytes) -> list[LineItem]:
    """The line items of a cart the reader left unread (`Cart.items_raw`). Their layout
    was walked then; what is left to fail is a string's UTF-8 (DecodeError)."""
    reader = SiteEventReader(v2=True)  # the items' layout is the same in v1 and v2
    reader._buf = raw
    try:
        items = reader._line_items()
        whole = reader._pos == len(raw)
    except Exception as exc:
        raise DecodeError("undecodable", f"{type(exc).__name__}: {exc}") from exc
    if not whole:
        raise DecodeError("undecodable", f"{len(raw) - reader._pos} trailing bytes in lineItems")
    return items


def site_event_reader(writer: bytes, reader: bytes) -> SiteEventReader | None:
    """The reader for bodies of the writer schema `writer` resolved to `reader` (both
    fingerprints), or None when this module does not know that pair."""
    if reader != _READER or writer not in (V1, V2):
        return None
    return SiteEventReader(v2=writer == V2)
