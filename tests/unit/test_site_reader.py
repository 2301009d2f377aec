"""The SiteEvent reader: the layouts it knows, and that it reads what fastavro reads.

Every test compares with fastavro (the reference reader): a body the SiteEvent reader
reads must give the event of fastavro's dict (its `record()` is fastavro's dict), and
a body it declines (None) is read by fastavro in decode.py, so only that is checked for
bodies fastavro rejects.
"""

from __future__ import annotations

import copy
import io
import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from fastavro import schemaless_reader

from pipeline.errors import DecodeError
from pipeline.source.decode import SingleObjectDecoder
from pipeline.source.event import SiteEvent
from pipeline.source.schemas import SchemaFamily, load_family
from pipeline.source.site_reader import V1, V2, WORDS_MAX, SiteEventReader, site_event_reader
from pipeline.tools.traffic import Encoder, ShopTraffic, encoded

from .test_decode import FULL_V2, LINE, MINIMAL, MINIMAL_DECODED, v1_record


@pytest.fixture(scope="module")
def family() -> SchemaFamily:
    return load_family("site_event")


def _fastavro(family: SchemaFamily, value: bytes) -> Any:
    """fastavro's record for a single-object value, or None when it rejects the body."""
    writer = next(v for v in family.versions if v.fingerprint == value[2:10])
    stream = io.BytesIO(value[10:])
    try:
        record = schemaless_reader(stream, writer.parsed, family.newest.parsed)
    except Exception:
        return None
    return record if stream.tell() == len(value) - 10 else None


def _record(event: SiteEvent | None) -> dict[str, Any] | None:
    return None if event is None else event.record()


def _reader(value: bytes) -> SiteEventReader:
    reader = site_event_reader(value[2:10], V2)
    assert reader is not None
    return reader


def test_every_schema_version_is_read_by_the_site_event_reader(family: SchemaFamily) -> None:
    """A new schemas/ version fails here: the reader must learn its layout (or the hot
    path silently falls back to a generic codec several times as slow)."""
    assert [v.fingerprint for v in family.versions] == [V1, V2]
    assert family.newest.fingerprint == V2
    decoder = SingleObjectDecoder(family)
    for version in family.versions:
        assert isinstance(decoder._writers[version.fingerprint][2], SiteEventReader)


def test_unknown_layouts_get_no_site_event_reader() -> None:
    other = bytes(8)
    assert site_event_reader(other, V2) is None
    assert site_event_reader(V2, other) is None  # another reader schema: other dicts
    assert site_event_reader(V2, V1) is None


@pytest.mark.parametrize("version", [1, 2])
def test_reads_full_and_minimal_events_as_fastavro(family: SchemaFamily, version: int) -> None:
    full = FULL_V2 if version == 2 else v1_record()
    for record in (full, MINIMAL):
        value = family.encode_single_object(record, version=version)
        got = _reader(value).read(value, 10)
        assert got is not None
        assert got.record() == _fastavro(family, value)
    value = family.encode_single_object(MINIMAL, version=version)
    assert _record(_reader(value).read(value, 10)) == MINIMAL_DECODED


def test_values_at_the_edges(family: SchemaFamily) -> None:
    record = copy.deepcopy(FULL_V2)
    record["id"] = "é-😀-" + "x" * 300  # multi-byte UTF-8, a multi-byte length
    record["timestamp"] = -(2**63)
    record["quantity"] = 2**31 - 1
    record["cart"]["total"] = float("inf")
    record["cart"]["checkoutStep"] = -(2**31)
    record["cart"]["lineItems"] = [LINE] * 70  # a count of more than one varint byte
    record["transaction"]["lineItems"] = []
    value = family.encode_single_object(record)
    got = _record(_reader(value).read(value, 10))
    assert got == _fastavro(family, value) == record
    record["timestamp"] = 2**63 - 1
    value = family.encode_single_object(record)
    assert _record(_reader(value).read(value, 10)) == record


def test_repeated_strings_are_one_object_and_their_table_is_bounded(
    family: SchemaFamily,
) -> None:
    record = copy.deepcopy(FULL_V2)
    value = family.encode_single_object(record)
    reader = _reader(value)
    first, second = reader.read(value, 10), reader.read(value, 10)
    assert first is not None and second is not None
    assert first.record() == second.record() == _fastavro(family, value)
    assert first.cart is not None and second.cart is not None
    one, two = first.cart.items()[0].product, second.cart.items()[0].product
    assert one.id == "sku-7" and one.id is two.id and one.name is two.name
    assert first.name is second.name
    assert first.id is not second.id  # event ids never repeat: decoded each time
    for n in range(WORDS_MAX + 10):  # a flood of distinct product ids
        record["cart"]["lineItems"] = [{**LINE, "product": {**LINE["product"], "id": f"p{n}"}}]
        value = family.encode_single_object(record)
        got = reader.read(value, 10)
        assert got is not None and got.cart is not None
        assert got.cart.items()[0].product.id == f"p{n}"
        assert len(reader._words) <= WORDS_MAX


def test_array_blocks_with_byte_sizes(family: SchemaFamily) -> None:
    """Avro lets a writer give a block's count negated, followed by its size in bytes;
    fastavro's writer never does, others may."""
    one = copy.deepcopy(MINIMAL) | {"cart": {"id": "c", "lineItems": [LINE]}}
    empty = copy.deepcopy(MINIMAL) | {"cart": {"id": "c", "lineItems": []}}
    with_one = family.encode_single_object(one)
    with_none = family.encode_single_object(empty)
    at = next(i for i, (a, b) in enumerate(zip(with_one, with_none, strict=False)) if a != b)
    assert (with_one[at], with_none[at]) == (0x02, 0x00)  # count 1 where the other ends
    item = with_one[at + 1 : at + 1 + len(with_one) - len(with_none)]
    size = bytes([2 * len(item)])  # zig-zag of a size below 64: one byte
    blocked = with_one[:at] + b"\x01" + size + item + with_one[at + 1 + len(item) :]
    expected = _fastavro(family, blocked)
    assert expected is not None and expected["cart"]["lineItems"] == [LINE]
    assert _record(_reader(blocked).read(blocked, 10)) == expected


def test_bodies_it_cannot_read_whole_are_declined(family: SchemaFamily) -> None:
    value = family.encode_single_object(FULL_V2)
    reader = _reader(value)
    for end in range(10, len(value)):
        assert reader.read(value[:end], 10) is None, end
    assert reader.read(value + b"\x00", 10) is None  # a byte left over
    bad_branch = family.encode_single_object(MINIMAL)[:-1] + b"\x04"  # transaction: branch 2
    assert reader.read(bad_branch, 10) is None
    bad_utf8 = family.encode_single_object(MINIMAL).replace(b"\x06e-0", b"\x06\xff-0")
    assert reader.read(bad_utf8, 10) is None
    # a cart's items are walked, not read: their strings' UTF-8 fails when they are
    record = copy.deepcopy(FULL_V2)
    record["cart"]["lineItems"][0]["product"]["name"] = "Ke\x00tle"
    record["transaction"]["lineItems"] = []  # a transaction's items are read with it
    in_items = family.encode_single_object(record).replace(b"Ke\x00tle", b"Ke\xfftle")
    got = reader.read(in_items, 10)
    assert got is not None and got.cart is not None
    with pytest.raises(DecodeError, match="UnicodeDecodeError") as error:
        got.cart.items()
    assert error.value.reason == "undecodable"
    assert _record(reader.read(value, 10)) == FULL_V2  # and it still reads after declining


def test_corrupted_traffic_decodes_as_with_fastavro_alone(family: SchemaFamily) -> None:
    """Shop traffic in both versions, with bytes flipped and bodies cut: the decoder
    with the SiteEvent reader gives fastavro's answer (record or error) every time, the
    cart's line items, left unread until asked for, included."""
    rng = random.Random(11)
    traffic = ShopTraffic(seed=3, visitors=100, invalid_rate=0.02)
    encoders = [Encoder(family)]
    values = [v for _, v in itertools.islice(encoded(traffic, encoders[0]), 1500)]
    values += [
        family.encode_single_object(_as_v1(event), version=1)
        for _, event, bad in itertools.islice(ShopTraffic(seed=4, visitors=50), 500)
        if bad is None and event is not None
    ]
    damaged = []
    for value in values:
        if len(value) <= 11:
            continue
        flipped = bytearray(value)
        flipped[rng.randrange(10, len(value))] ^= 1 << rng.randrange(8)
        damaged += [bytes(flipped), value[: rng.randrange(10, len(value))]]
    fast = SingleObjectDecoder(family)

    def outcome(decode: Callable[[bytes], Any], value: bytes) -> Any:
        try:
            decoded = decode(value)
        except DecodeError as exc:
            return (exc.reason, exc.detail)
        return decoded

    def read(value: bytes) -> Any:
        return fast(value).record()  # the cart's items read now, as normalise reads them

    outcomes = [(outcome(read, v), outcome(fast.record, v)) for v in values + damaged]
    assert [a for a, b in outcomes if a != b] == []
    errors = sum(isinstance(b, tuple) for _, b in outcomes)
    assert 500 < errors < len(outcomes) - 1000  # both records and errors in the mix


def _as_v1(event: dict[str, Any]) -> dict[str, Any]:
    """A v2 event as a v1 writer sends it (no user.userId, no cart.currency)."""
    event = copy.deepcopy(event)
    (event.get("user") or {}).pop("userId", None)
    (event.get("cart") or {}).pop("currency", None)
    return event
