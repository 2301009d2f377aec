"""decode + schemas: Avro single-object records -> site events, and fingerprints."""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

from pipeline.errors import DecodeError, PipelineError
from pipeline.source import decode as decode_module
from pipeline.source.decode import SingleObjectDecoder, make_decoder
from pipeline.source.event import SiteEvent
from pipeline.source.schemas import (
    SINGLE_OBJECT_MAGIC,
    SchemaFamily,
    load_family,
    single_object_fingerprint,
    strip_logical_types,
)

# ----------------------------------------------------------------------------------------
# CRC-64-AVRO, written from the Avro specification ("Schema Fingerprints")

EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


FP_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_reference_crc64_avro() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795
    # the Avro project's test vector for the schema "null"
    assert crc64_avro(b'"null"') == 7195948357588979594


# ----------------------------------------------------------------------------------------

TS = 1764000000000
LINE = {
    "product": {"id": "sku-7", "name": "Kettle", "unitSalePrice": 2490.0, "unitPrice": 2990.0},
    "quantity": 2,
    "subtotal": 4980.0,
}
FULL_V2: dict[str, Any] = {
    "id": "e-1",
    "name": "Completed Transaction",
    "timestamp": TS,
    "user": {"email": "anna@example.ru", "userId": "u-1"},
    "cart": {
        "id": "c-1",
        "total": 4980.0,
        "currency": "RUB",
        "checkoutStep": 3,
        "lineItems": [LINE],
    },
    "product": {"id": "sku-9", "name": None, "unitSalePrice": None, "unitPrice": 95.5},
    "quantity": 4,
    "transaction": {
        "orderId": "o-1",
        "cartId": "c-1",
        "total": 5180.0,
        "tax": 0.0,
        "shippingCost": 200.0,
        "affiliation": "web",
        "lineItems": [LINE, LINE],
    },
}
MINIMAL = {"id": "e-0", "name": "Viewed Page", "timestamp": TS}
MINIMAL_DECODED = {
    **MINIMAL,
    "user": None,
    "cart": None,
    "product": None,
    "quantity": None,
    "transaction": None,
}


def v1_record() -> dict[str, Any]:
    record = copy.deepcopy(FULL_V2)
    del record["user"]["userId"]
    del record["cart"]["currency"]
    return record


@pytest.fixture(scope="module")
def family() -> SchemaFamily:
    return load_family("site_event")


@pytest.fixture(scope="module", params=["site", "cavro", "fastavro"])
def decode(family: SchemaFamily, request: pytest.FixtureRequest) -> Iterator[SingleObjectDecoder]:
    """Every reader: the SiteEvent reader (what runs for the schemas/ versions), cavro (for
    writer schemas the SiteEvent reader does not know), and fastavro alone, as without
    cavro."""
    if request.param == "site":
        yield SingleObjectDecoder(family)
        return
    assert decode_module.cavro is not None  # a dependency: installed everywhere we test
    with pytest.MonkeyPatch.context() as patch:  # as for a writer schema it does not know
        patch.setattr(decode_module, "site_event_reader", lambda writer, reader: None)
        if request.param == "fastavro":  # as on a platform without cavro
            patch.setattr(decode_module, "cavro", None)
        yield SingleObjectDecoder(family)


def test_family_versions(family: SchemaFamily) -> None:
    assert [v.version for v in family.versions] == [1, 2]
    assert family.newest.version == 2
    assert family.version(1).version == 1


def test_round_trip_newest(family: SchemaFamily, decode: SingleObjectDecoder) -> None:
    value = family.encode_single_object(FULL_V2)
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == family.newest.fingerprint
    assert decode(value).record() == FULL_V2


def test_version_1_resolves_to_the_newest_reader(
    family: SchemaFamily, decode: SingleObjectDecoder
) -> None:
    value = family.encode_single_object(v1_record(), version=1)
    assert value[2:10] == family.version(1).fingerprint
    assert value[2:10] != family.newest.fingerprint
    expected = copy.deepcopy(FULL_V2)
    expected["user"]["userId"] = None  # fields new in v2 take their defaults
    expected["cart"]["currency"] = None
    assert decode(value).record() == expected


@pytest.mark.parametrize("version", [1, 2, None])
def test_minimal_event(family: SchemaFamily, decode: SingleObjectDecoder, version: Any) -> None:
    decoded = decode(family.encode_single_object(MINIMAL, version=version))
    assert decoded.record() == MINIMAL_DECODED
    assert decoded.record() == decode.record(family.encode_single_object(MINIMAL, version=version))
    assert type(decoded.timestamp) is int  # logical type stripped: plain epoch ms


def test_site_event_of_a_record_and_back() -> None:
    """`SiteEvent.of` reads fastavro's dicts (and partial ones, with the schema's defaults);
    `record()` gives fastavro's dict back, field for field."""
    assert SiteEvent.of(FULL_V2).record() == FULL_V2
    assert SiteEvent.of(MINIMAL).record() == MINIMAL_DECODED
    partial = {**MINIMAL, "cart": {"id": "c-1"}, "transaction": {"lineItems": [{"quantity": 1}]}}
    got = SiteEvent.of(partial).record()
    assert got["cart"] == {
        "id": "c-1",
        "total": None,
        "currency": None,
        "checkoutStep": None,
        "lineItems": [],
    }
    empty_product = {"id": None, "name": None, "unitSalePrice": None, "unitPrice": None}
    assert got["transaction"]["lineItems"] == [
        {"product": empty_product, "quantity": 1, "subtotal": None}
    ]


def test_minimal_event_bytes(family: SchemaFamily) -> None:
    body = b"\x06e-0" + b"\x16Viewed Page" + b"\x80\xa0\xbf\xe9\xd6\x66" + b"\x00" * 5
    assert family.encode_single_object(MINIMAL) == b"\xc3\x01" + family.newest.fingerprint + body


def test_make_decoder_without_registry_is_single_object(family: SchemaFamily) -> None:
    decoder = make_decoder(family, None)
    assert isinstance(decoder, SingleObjectDecoder)
    assert decoder(family.encode_single_object(MINIMAL)).record() == MINIMAL_DECODED


# ----------------------------------------------------------------------------------------
# DecodeError reasons


def _reason(decode: SingleObjectDecoder, value: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(value)
    assert isinstance(info.value, PipelineError)
    assert info.value.retryable is False
    return info.value


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\xc3",
        b"\xc3\x01",
        b"\xc3\x01" + b"\x00" * 7,  # header plus a 7-byte fingerprint: too short
        b"\xc3\x02" + b"\x00" * 20,
        b"\x01\xc3" + b"\x00" * 20,
        b"\x00\x00\x00\x00\x01" + b"\x06e-0",  # Confluent framing
        b'{"id": "e-0"}',
    ],
)
def test_bad_framing(decode: SingleObjectDecoder, value: bytes) -> None:
    error = _reason(decode, value)
    assert error.reason == "bad-framing"
    assert str(error) == "bad-framing: not Avro single-object encoding (C3 01 header)"


def test_bad_framing_of_a_good_record_with_a_wrong_header(
    family: SchemaFamily, decode: SingleObjectDecoder
) -> None:
    value = family.encode_single_object(MINIMAL)
    assert _reason(decode, b"\xc4" + value[1:]).reason == "bad-framing"


def test_unknown_schema(family: SchemaFamily, decode: SingleObjectDecoder) -> None:
    value = family.encode_single_object(MINIMAL)
    fingerprint = bytes(reversed(value[2:10]))  # big-endian: not the fingerprint
    error = _reason(decode, value[:2] + fingerprint + value[10:])
    assert error.reason == "unknown-schema"
    assert error.detail == f"fingerprint {fingerprint.hex()} is not in schemas/"


def test_unknown_schema_with_an_empty_body(decode: SingleObjectDecoder) -> None:
    assert _reason(decode, SINGLE_OBJECT_MAGIC + b"\x01" * 8).reason == "unknown-schema"


def test_every_truncation_is_undecodable(family: SchemaFamily, decode: SingleObjectDecoder) -> None:
    value = family.encode_single_object(FULL_V2)
    for end in range(10, len(value)):
        assert _reason(decode, value[:end]).reason == "undecodable", end


def test_truncated_minimal_body(family: SchemaFamily, decode: SingleObjectDecoder) -> None:
    value = family.encode_single_object(MINIMAL)
    error = _reason(decode, value[:-1])
    assert error.reason == "undecodable"
    assert error.detail.startswith("EOFError")


@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x00\x00"])
def test_trailing_bytes(family: SchemaFamily, decode: SingleObjectDecoder, extra: bytes) -> None:
    error = _reason(decode, family.encode_single_object(MINIMAL) + extra)
    assert error.reason == "undecodable"
    assert error.detail == f"{len(extra)} trailing bytes"


def test_trailing_bytes_after_an_old_writer(
    family: SchemaFamily, decode: SingleObjectDecoder
) -> None:
    value = family.encode_single_object(MINIMAL, version=1) + b"\x02"
    assert _reason(decode, value).detail == "1 trailing bytes"


# ----------------------------------------------------------------------------------------
# fingerprints


@pytest.mark.parametrize("version", [1, 2])
def test_fingerprint_is_little_endian_crc64_of_canonical_form(
    family: SchemaFamily, version: int
) -> None:
    schema = family.version(version)
    canonical = to_parsing_canonical_form(schema.raw).encode()
    expected = struct.pack("<Q", crc64_avro(canonical))
    assert schema.fingerprint == expected
    assert len(schema.fingerprint) == 8
    assert family.encode_single_object(MINIMAL, version=version)[2:10] == expected


def test_fingerprint_of_a_hand_canonicalised_schema() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "namespace": "n",
        "doc": "dropped",
        "fields": [
            {"name": "a", "type": "int", "default": 1, "doc": "dropped"},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    canonical = (
        '{"name":"n.R","type":"record","fields":'
        '[{"name":"a","type":"int"},{"name":"t","type":"long"}]}'
    )
    expected = struct.pack("<Q", crc64_avro(canonical.encode()))
    assert single_object_fingerprint(schema) == expected
    assert single_object_fingerprint(strip_logical_types(schema)) == expected
    assert single_object_fingerprint("null") == struct.pack("<Q", 7195948357588979594)


def test_strip_logical_types() -> None:
    raw = {"type": "record", "fields": [{"type": {"type": "long", "logicalType": "x"}}]}
    assert strip_logical_types(raw) == {"type": "record", "fields": [{"type": {"type": "long"}}]}
    assert json.dumps(raw) != json.dumps(strip_logical_types(raw))  # input left alone
    assert raw["fields"][0]["type"]["logicalType"] == "x"


def test_the_fast_readers_and_fastavro_read_the_same_events_from_shop_traffic(
    family: SchemaFamily, decode: SingleObjectDecoder
) -> None:
    import itertools

    from pipeline.tools.traffic import Encoder, ShopTraffic, encoded

    traffic = ShopTraffic(seed=5, visitors=200, invalid_rate=0.05)
    values = [v for _, v in itertools.islice(encoded(traffic, Encoder(family)), 3000)]
    fastavro_only = SingleObjectDecoder(family).record

    def outcome(decode: Callable[[bytes], Any], value: bytes) -> Any:
        try:
            decoded = decode(value)
        except DecodeError as exc:
            return (exc.reason, exc.detail)
        return decoded if type(decoded) is dict else decoded.record()

    outcomes = [(outcome(decode, v), outcome(fastavro_only, v)) for v in values]
    assert all(a == b for a, b in outcomes)
    assert any(isinstance(a, tuple) for a, _ in outcomes)  # bad records were in the mix
