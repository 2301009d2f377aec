"""Triggers on a real broker, in real time, with thresholds of seconds."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from confluent_kafka import Producer

from pipeline.source.schemas import load_family

from .conftest import Harness, wait_for

AFTER_S = 2
KETTLE = {"id": "sku-7", "name": "Kettle", "unitSalePrice": 2490.0}
MUG = {"id": "sku-9", "name": "Mug", "unitSalePrice": 390.0}
_n = iter(range(10**9))


def ev(name: str, cart_id: str, email: str | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"{cart_id}-x{next(_n)}",
        "name": name,
        "timestamp": int(time.time() * 1000),
        "cart": {"id": cart_id},
        **fields,
    }
    if email:
        event["user"] = {"email": email}
    return event


def triggers(harness: Harness, name: str = "AbandonedCart") -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for command in harness.commands():
        if command["call"] == "Trigger" and command["args"]["name"] == name:
            found.setdefault(command["cartId"], []).append(command)
    return found


def assert_trigger_ids(commands: list[dict[str, Any]]) -> None:
    """Trigger ids are `<cart>@abandoned@<last activity>.<digest>` (browse: `@browse@`),
    the digest 8 hex digits of blake2b over the orjson of the args as sent."""
    kinds = {"AbandonedCart": "abandoned", "BrowseAbandonment": "browse"}
    for c in commands:
        args = c["args"]
        digest = hashlib.blake2b(orjson.dumps(args), digest_size=4).hexdigest()
        key = c["cartId"] or args["email"]
        assert c["id"] == f"{key}@{kinds[args['name']]}@{args['lastActivity']}.{digest}", c


def trigger_records(harness: Harness, expected: int) -> list[dict[str, Any]]:
    """The trigger topic's records, decoded."""
    from pipeline.source.decode import SingleObjectDecoder

    decode = SingleObjectDecoder(load_family("trigger")).record
    found = harness.read(f"{harness.topic}.triggers", expected, timeout_s=10)
    return [decode(m.value()) for m in found]


def env(**extra: str) -> dict[str, str]:
    return {
        "OFSYS_ABANDONED_CART_AFTER_S": str(AFTER_S),
        "OFSYS_BROWSE_ABANDONED_AFTER_S": "2",
        "OFSYS_FLUSH_INTERVAL_MS": "200",
        **extra,
    }


def test_abandoned_carts_fire_once_by_the_rules(harness: Harness) -> None:
    pipeline = harness.start(**env())
    harness.send(
        ev("Added Product", "quiet", "anna@example.ru", product=KETTLE, quantity=2),
        ev("Added Product", "quiet", product=MUG),
        ev("Added Product", "bought", "b@example.ru", product=KETTLE),
        ev("Completed Transaction", "bought", transaction={"orderId": "o-1", "cartId": "bought"}),
        ev("Viewed Page", "empty", "e@example.ru", cart={"id": "empty", "lineItems": []}),
        ev("Added Product", "no-email", product=KETTLE),
        ev("Added Product", "busy", "busy@example.ru", product=KETTLE),
    )
    time.sleep(1.2)
    rearm = ev("Added Product", "busy", product=MUG)  # activity before the threshold
    harness.send(rearm)
    wait_for(lambda: "quiet" in triggers(harness), 30, "the quiet cart's trigger")
    time.sleep(AFTER_S + 1)
    harness.send(
        ev("Viewed Product Detail", "no-email", "late@example.ru", product=MUG),
    )  # the email comes, the cart still quiet
    wait_for(lambda: {"busy", "no-email"} <= set(triggers(harness)), 30, "the other triggers")
    time.sleep(AFTER_S + 1)  # nothing more may fire
    fired = triggers(harness)
    assert sorted(fired) == ["busy", "no-email", "quiet"]
    assert all(len(commands) == 1 for commands in fired.values())
    assert_trigger_ids([commands[0] for commands in fired.values()])
    quiet = fired["quiet"][0]["args"]
    assert quiet["TotalPrice"] == 2 * 2490.0 + 390.0
    assert quiet["items"] == [
        {"idProduct": "sku-7", "quantity": 2, "productName": "Kettle", "priceunit": 2490.0},
        {"idProduct": "sku-9", "quantity": 1, "productName": "Mug", "priceunit": 390.0},
    ]
    assert fired["no-email"][0]["email"] == "late@example.ru"
    busy = fired["busy"][0]  # re-armed: due counted from its last activity
    assert busy["args"]["lastActivity"] == rearm["timestamp"]
    assert busy["ts"] == rearm["timestamp"] + AFTER_S * 1000
    records = [r for r in trigger_records(harness, 3) if r["name"] == "AbandonedCart"]
    assert sorted(r["cartId"] for r in records) == ["busy", "no-email", "quiet"]
    by_cart = {r["cartId"]: r for r in records}
    assert by_cart["quiet"]["totalPrice"] == quiet["TotalPrice"]
    assert by_cart["quiet"]["items"][0] == {
        "idProduct": "sku-7",
        "productName": "Kettle",
        "priceunit": 2490.0,
        "quantity": 2,
    }
    assert pipeline.sample("ofsys_triggers_total", name="AbandonedCart") == 3
    assert pipeline.terminate() == 0


def test_browse_abandonment_fires_once_and_not_after_an_add(harness: Harness) -> None:
    harness.start(**env())
    harness.send(
        ev("Viewed Product Detail", "looker", "l@example.ru", product={"id": "p1"}),
        ev("Viewed Product Detail", "looker", product={"id": "p2"}),
        ev("Viewed Product Detail", "buyer", "b@example.ru", product={"id": "p1"}),
        ev("Added Product", "buyer", product=KETTLE),
    )
    wait_for(lambda: "looker" in triggers(harness, "BrowseAbandonment"), 30, "browse trigger")
    time.sleep(AFTER_S + 1)
    fired = triggers(harness, "BrowseAbandonment")
    assert list(fired) == ["looker"]
    assert fired["looker"][0]["args"]["viewedProducts"] == ["p2", "p1"]
    assert_trigger_ids(fired["looker"])


def test_kill_9_around_the_due_time_fires_exactly_once(harness: Harness) -> None:
    due_s = 3
    first = harness.start(**env(OFSYS_ABANDONED_CART_AFTER_S=str(due_s)))
    carts = [f"k{i}" for i in range(20)]
    harness.send(
        *[ev("Added Product", cart, f"{cart}@example.ru", product=KETTLE) for cart in carts],
    )
    wait_for(
        lambda: (
            len([c for c in harness.commands() if c["call"] == "ECommerce.AddCart"]) == len(carts)
        ),
        30,
        "carts",
    )
    time.sleep(2.5)  # just before the due time
    first.kill()
    second = harness.restart(first)  # the same pipeline, restarted
    wait_for(lambda: len(triggers(harness)) == len(carts), 60, "every trigger")
    second.kill()  # and once more, after they fired
    third = harness.restart(second)
    # restored (the gauge is set after the state is restored), then past another due time
    wait_for(lambda: third.sample("ofsys_assigned_partitions") == 4, 30, "the restored state")
    time.sleep(due_s + 1)
    fired = triggers(harness)
    assert sorted(fired) == sorted(carts)
    assert all(len(commands) == 1 for commands in fired.values())
    assert_trigger_ids([commands[0] for commands in fired.values()])
    records = trigger_records(harness, len(carts))
    assert sorted({r["id"] for r in records}) == sorted(c[0]["id"] for c in fired.values())
    assert third.terminate() == 0


def test_ten_thousand_carts_quiet_at_once_fire_within_threshold_plus_5_s(harness: Harness) -> None:
    harness.start(**env(OFSYS_ABANDONED_CART_AFTER_S="3", OFSYS_BROWSE_ABANDONED_AFTER_S="0"))
    producer = Producer(
        {
            "bootstrap.servers": harness.broker.bootstrap,
            "linger.ms": 20,
            "partitioner": "murmur2_random",
        }
    )
    last_ms = 0
    for i in range(10_000):
        event = ev("Added Product", f"m{i}", f"m{i}@example.ru", product=KETTLE)
        last_ms = event["timestamp"]
        producer.produce(
            harness.topic, key=f"m{i}", value=harness.family.encode_single_object(event)
        )
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    deadline_s = last_ms / 1000 + 3 + 5
    wait_for(
        lambda: len(triggers(harness)) == 10_000, deadline_s - time.time() + 1, "10,000 triggers"
    )
    done_s = time.time()
    print(
        f"10,000 triggers in Journey {done_s - last_ms / 1000:.1f} s after the last event "
        f"(threshold 3 s)"
    )
    assert done_s <= deadline_s
