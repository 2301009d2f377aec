"""The spine end to end on a real broker: Avro records in, Journey commands out."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import orjson
import pytest

from pipeline.tools.traffic import Encoder

from .checks import shop_records
from .conftest import KEY, Harness, wait_for
from .registry import SchemaRegistry

CART = "c-1042"
T0 = 1_764_000_000_000
KETTLE = {"id": "sku-7", "name": "Kettle", "unitSalePrice": 2490.0, "unitPrice": 2990.0}
MUG = {"id": "sku-9", "name": "Mug", "unitSalePrice": 390.0}


def event(n: int, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"e{n}", "name": name, "timestamp": T0 + n * 1000, "cart": {"id": CART}, **fields}


# The worked example of docs/mapping.md: one shopper's session, events in ...
SESSION = [
    event(
        1,
        "Viewed Page",
        user={"email": " Anna@Example.RU "},
        cart={
            "id": CART,
            "total": 2490.0,
            "checkoutStep": 1,
            "lineItems": [{"product": KETTLE, "quantity": 1, "subtotal": 2490.0}],
        },
    ),
    event(2, "Viewed Product Detail", product=MUG),
    event(3, "Added Product", product=KETTLE, quantity=1),
    event(4, "Added Product", product=MUG, quantity=2),
    event(5, "Removed Product", product=MUG, quantity=1),
    event(
        6,
        "Completed Transaction",
        transaction={
            "orderId": "o-77",
            "cartId": CART,
            "total": 5370.0,
            "tax": 895.0,
            "shippingCost": 0.0,
            "affiliation": "web",
            "lineItems": [
                {"product": KETTLE, "quantity": 2, "subtotal": 4980.0},
                {"product": MUG, "quantity": 1, "subtotal": 390.0},
            ],
        },
    ),
]
SESSION.append(SESSION[-1])  # the same event delivered twice
SESSION.append({**SESSION[-1], "id": "e7", "timestamp": T0 + 7000})  # thank-you page reload

A = "anna@example.ru"
# ... and commands out: (id, call, args), every command carrying cartId and email. The
# cart's net changes have ids `<cart>@<version>.<digest>/<n>`, the digest 8 hex digits of
# blake2b over the orjson of (ts, email, [(call, args), ...]) of the change, ts being the
# cart's last activity: e1 for the first change, e5 for the second (`assert_net_ids`).
CHANGE_1 = "c-1042@1.7d6cb348/"
CHANGE_2 = "c-1042@2.3e022ace/"
CHANGE_TS = {CHANGE_1: T0 + 1000, CHANGE_2: T0 + 5000}
EXPECTED = [
    ("e1/0", "Track", {"f_EMail": A}),
    (CHANGE_1 + "0", "ECommerce.AddCart", {"idCart": CART, "TotalPrice": 2490.0, "status": 1}),
    (
        CHANGE_1 + "1",
        "ECommerce.AddCartItem",
        {
            "idCart": CART,
            "idProduct": "sku-7",
            "quantity": 1,
            "productName": "Kettle",
            "priceunit": 2490.0,
        },
    ),
    (CHANGE_1 + "2", "ECommerce.SubmitCart", {"idCart": CART}),
    ("e2/0", "ECommerce.ProductView", {"idProduct": "sku-9"}),
    (CHANGE_2 + "0", "ECommerce.UpdateCart", {"idCart": CART, "TotalPrice": 5370.0, "status": 1}),
    (
        CHANGE_2 + "1",
        "ECommerce.AddCartItem",
        {
            "idCart": CART,
            "idProduct": "sku-7",
            "quantity": 2,
            "productName": "Kettle",
            "priceunit": 2490.0,
        },
    ),
    (
        CHANGE_2 + "2",
        "ECommerce.AddCartItem",
        {
            "idCart": CART,
            "idProduct": "sku-9",
            "quantity": 1,
            "productName": "Mug",
            "priceunit": 390.0,
        },
    ),
    (CHANGE_2 + "3", "ECommerce.SubmitCart", {"idCart": CART}),
    (
        "e6/0",
        "ECommerce.AddTransaction",
        {
            "idTransaction": "o-77",
            "idCart": CART,
            "affiliation": "web",
            "revenue": 5370.0,
            "tax": 895.0,
            "shipping": 0.0,
        },
    ),
    (
        "e6/1",
        "ECommerce.AddItem",
        {
            "idTransaction": "o-77",
            "idProduct": "sku-7",
            "quantity": 2,
            "idCart": CART,
            "productName": "Kettle",
            "Price_unit": 2490.0,
            "Price_total": 4980.0,
        },
    ),
    (
        "e6/2",
        "ECommerce.AddItem",
        {
            "idTransaction": "o-77",
            "idProduct": "sku-9",
            "quantity": 1,
            "idCart": CART,
            "productName": "Mug",
            "Price_unit": 390.0,
            "Price_total": 390.0,
        },
    ),
    ("e6/3", "ECommerce.SubmitTransaction", {"idTransaction": "o-77"}),
]


def digest(payload: Any) -> str:
    return hashlib.blake2b(orjson.dumps(payload), digest_size=4).hexdigest()


def assert_net_ids(commands: list[dict[str, Any]]) -> None:
    """The worked example's net changes as Journey received them: ids of the form
    `<cart>@<version>.<8 hex>/<n>`, at the cart's last activity, the digest that of what
    each change says (so the literal ids above are the rule's, not copied output)."""
    changes: dict[str, list[dict[str, Any]]] = {}
    for c in commands:
        match = re.fullmatch(r"(.+@[0-9]+\.[0-9a-f]{8}/)([0-9]+)", c["id"])
        if match is not None:
            group = changes.setdefault(match[1], [])
            assert int(match[2]) == len(group), c["id"]
            group.append(c)
    assert list(changes) == [CHANGE_1, CHANGE_2]
    for prefix, group in changes.items():
        assert {(c["ts"], c["email"]) for c in group} == {(CHANGE_TS[prefix], A)}
        said = (CHANGE_TS[prefix], A, [(c["call"], c["args"]) for c in group])
        assert prefix == f"{prefix.split('.')[0]}.{digest(said)}/", prefix


def test_the_worked_examples_ids_are_the_digests_of_what_they_say() -> None:
    """The expected ids themselves, checked against the rule (no broker needed)."""
    commands = []
    for i, call, args in EXPECTED:
        ts = CHANGE_TS.get(i[: i.rfind("/") + 1])  # the net changes' ts; the rest: not used
        commands.append({"id": i, "ts": ts, "email": A, "call": call, "args": args})
    assert_net_ids(commands)


@pytest.mark.parametrize("framing", ["single-object", "confluent"])
def test_worked_example_end_to_end(harness: Harness, framing: str) -> None:
    with SchemaRegistry() as registry:
        url = registry.url if framing == "confluent" else None
        encode = Encoder(harness.family, url)
        harness.produce([(CART, encode(e)) for e in SESSION])
        overrides = {"OFSYS_FLUSH_INTERVAL_MS": "3000"}  # the whole session in one window
        if url:
            overrides["OFSYS_SCHEMA_REGISTRY_URL"] = url
        pipeline = harness.start(**overrides)
        harness.wait_commands(len(EXPECTED), 60, "the commands")
        harness.wait_committed(len(SESSION), 30, "the commit")
    assert harness.ledger() == EXPECTED
    assert {(c["cartId"], c["email"]) for c in harness.commands()} == {(CART, A)}
    assert_net_ids(harness.commands())
    assert (
        pipeline.sample("ofsys_events_total", event="Completed Transaction", outcome="duplicate")
        == 2
    )
    assert pipeline.terminate() == 0


def test_old_schema_versions_still_decode(harness: Harness) -> None:
    family = harness.family
    assert family.newest.version > 1
    harness.produce([(CART, family.encode_single_object(e, version=1)) for e in SESSION])
    harness.start(OFSYS_FLUSH_INTERVAL_MS="3000")
    harness.wait_commands(len(EXPECTED), 60, "the commands")
    assert harness.ledger() == EXPECTED


def test_every_dead_letter_reason_and_skipped_events(harness: Harness) -> None:
    good = harness.family.encode_single_object
    unknown_fp = b"\xc3\x01" + b"\x00" * 8 + good(SESSION[0])[10:]
    bad = [
        ("bad-framing", b'{"name": "Viewed Page"}'),
        ("unknown-schema", unknown_fp),
        ("undecodable", good(SESSION[0])[:14]),
        ("too-large", b"\xc3\x01" + b"x" * 5000),
        (
            "missing-field",
            good(
                {"id": "m1", "name": "Added Product", "timestamp": T0, "product": {"id": "sku-1"}}
            ),
        ),
        (
            "missing-field",
            good({"id": "m2", "name": "Removed Product", "timestamp": T0, "cart": {"id": CART}}),
        ),
        ("missing-field", good({"id": "m3", "name": "Viewed Product Detail", "timestamp": T0})),
        (
            "missing-field",
            good(
                {
                    "id": "m4",
                    "name": "Completed Transaction",
                    "timestamp": T0,
                    "transaction": {"cartId": CART},
                }
            ),
        ),
    ]
    skipped = good({"id": "s1", "name": "Viewed Checkout Step", "timestamp": T0})
    records = [(f"k{i}", value) for i, (_, value) in enumerate(bad)]
    extra = [("k-skip", skipped), ("k-none", b""), (CART, good(SESSION[0]))]
    harness.produce([*records, *extra])
    pipeline = harness.start(OFSYS_MAX_RECORD_BYTES="4096")
    harness.wait_commands(4, 60, "the good event's commands")
    dlq = harness.dlq(len(bad) + 1)
    reasons = sorted((m.key().decode(), dict(m.headers())["ofsys.reason"].decode()) for m in dlq)
    assert reasons == sorted(
        [(f"k{i}", reason) for i, (reason, _) in enumerate(bad)] + [("k-none", "empty")]
    )
    by_key = {m.key().decode(): m for m in dlq}
    for i, (_, value) in enumerate(bad):
        msg = by_key[f"k{i}"]
        headers = dict(msg.headers())
        assert msg.value() == value  # the original record, untouched
        assert headers["ofsys.source.topic"] == harness.topic.encode()
        assert int(headers["ofsys.source.offset"]) >= 0
        assert headers["ofsys.error"]
    missing = [dict(by_key[f"k{i}"].headers())["ofsys.error"] for i in range(4, 8)]
    assert missing == [
        b"missing cart.id",
        b"missing product.id",
        b"missing product.id",
        b"missing transaction.orderId",
    ]
    wait_for(
        lambda: pipeline.sample("ofsys_events_total", event="other", outcome="skipped") == 1,
        10,
        "the skipped count",
    )
    assert pipeline.sample("ofsys_dead_letters_total", reason="missing-field") == 4
    assert pipeline.terminate() == 0


def test_transient_failures_are_retried_with_nothing_lost_or_doubled(harness: Harness) -> None:
    records = shop_records(harness.family, 3000, seed=11)
    journey = harness.journey
    journey.set_faults(fail_next=3, status=429, retry_after=1)
    harness.produce(records[:1000])
    pipeline = harness.start(OFSYS_JOURNEY_TIMEOUT_S="0.5")
    wait_for(
        lambda: pipeline.sample("ofsys_journey_retries_total", reason="throttled") >= 3,
        60,
        "429 retries",
    )
    journey.set_faults(fail_next=2, status=503, error_rate=0.3, seed=5)
    harness.produce(records[1000:2000])
    wait_for(
        lambda: pipeline.sample("ofsys_journey_retries_total", reason="server_error") >= 2,
        60,
        "5xx retries",
    )
    journey.set_faults(latency_ms=800)  # every request times out at 0.5 s
    harness.produce(records[2000:])
    wait_for(
        lambda: pipeline.sample("ofsys_journey_retries_total", reason="timeout") >= 2,
        60,
        "timeouts",
    )
    journey.set_faults()
    harness.wait_committed(len(records), 90, "every record committed")
    harness.assert_ledger_matches(records)
    assert pipeline.terminate() == 0


def test_unauthorized_stops_delivery_and_commits_nothing(harness: Harness) -> None:
    harness.journey.set_faults(unauthorized=True)
    records = shop_records(harness.family, 200, seed=3)
    harness.produce(records)
    pipeline = harness.start()
    wait_for(lambda: pipeline.sample("ofsys_journey_unauthorized") == 1, 60, "401 noticed")
    _, body = wait_for(lambda: (r := pipeline.ready())[0] == 503 and r, 10, "not ready")
    assert "Journey refuses the account key (401/403)" in body["problems"]
    assert harness.committed() == {}
    assert harness.journey.ledger()["accepted"] == 0
    assert harness.dlq(0, timeout_s=3) == []
    assert KEY not in pipeline.log()
    harness.journey.set_faults()
    harness.wait_committed(len(records), 60, "delivery after the key is accepted again")
    assert pipeline.sample("ofsys_journey_unauthorized") == 0
    harness.assert_ledger_matches(records)
    assert pipeline.terminate() == 0


def test_sigterm_drains_and_commits(harness: Harness) -> None:
    records = shop_records(harness.family, 500, seed=5)
    harness.produce(records)
    pipeline = harness.start(OFSYS_FLUSH_INTERVAL_MS="600000")  # only the drain delivers
    wait_for(lambda: pipeline.sample("ofsys_assigned_partitions") == 4, 30, "assignment")
    time.sleep(3)  # let it consume; nothing is delivered before the window closes
    assert harness.journey.ledger()["accepted"] == 0
    assert pipeline.terminate(timeout_s=30) == 0
    assert sum(harness.committed().values()) == len(records)
    harness.assert_ledger_matches(records)
    assert "drained and committed" in pipeline.log()


def test_rejected_commands_are_dead_lettered_and_the_rest_delivered(harness: Harness) -> None:
    # Journey names two commands it rejects (422): they are dead-lettered with its
    # message and the rest of their batch is re-sent; nothing is lost, nothing retried.
    harness.journey.set_faults(reject_ids=["e2/0", "e6/1"])
    harness.produce([(CART, harness.family.encode_single_object(e)) for e in SESSION])
    pipeline = harness.start(OFSYS_FLUSH_INTERVAL_MS="3000")
    harness.wait_committed(len(SESSION), 60, "the commit")
    kept = [command_id for command_id, _, _ in harness.ledger()]
    assert kept == [
        command_id for command_id, _, _ in EXPECTED if command_id not in ("e2/0", "e6/1")
    ]
    dlq = harness.dlq(2)
    assert sorted(dict(m.headers())["ofsys.command.id"].decode() for m in dlq) == ["e2/0", "e6/1"]
    assert {dict(m.headers())["ofsys.reason"] for m in dlq} == {b"journey-rejected"}
    assert {dict(m.headers())["ofsys.error"] for m in dlq} == {b"rejected by emulator"}
    assert pipeline.sample("ofsys_dead_letters_total", reason="journey-rejected") == 2
    assert pipeline.sample("ofsys_journey_retries_total", reason="server_error") == 0
    assert pipeline.terminate() == 0
