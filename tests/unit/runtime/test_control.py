"""The control topic in the loop: a forget request erases the shopper's state, its
tombstones and its offset are committed with the window, a replaying partition applies
it only once its replay is over, and a request not understood is skipped."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from pipeline.state.carts import cart_email

from .conftest import TOPIC, Rig


def held_cart(r: Rig) -> str:
    """A cart partition 0 holds, with an identity (so there is something to erase)."""
    state = r.pipeline.states[0]
    return next(cart_id for cart_id, cart in state.carts.items() if cart_email(cart))


def request(r: Rig, value: bytes) -> None:
    control = r.pipeline.settings.control_topic
    r.fakes.consumer.add(control, b"k", value, partition=0)


def assign_with_control(r: Rig, records: list[tuple[str, bytes]]) -> None:
    settings = r.pipeline.settings
    for key, value in records:
        r.fakes.consumer.add(TOPIC, key, value)
    topics = (TOPIC, settings.repartition_topic, settings.control_topic)
    r.fakes.consumer.assign_next([(topic, 0) for topic in topics])
    r.turn()


def test_a_forget_request_erases_and_commits_with_the_window(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    assign_with_control(r, records[:300])
    r.window()
    cart = held_cart(r)
    request(r, orjson.dumps({"v": 1, "cart": cart}))
    r.turn()
    state = r.pipeline.states[0]
    assert cart not in state.carts  # and its email with it
    control = r.pipeline.settings.control_topic
    assert (control, 0) not in r.fakes.consumer.group_committed  # with the window only
    r.window()
    r.turn()
    assert r.fakes.consumer.group_committed[(control, 0)] == 1
    changelog = r.fakes.outputs.topic(r.pipeline.settings.changelog_topic)
    tombstones = {rec.key for rec in changelog if rec.value is None}
    assert b"c" + cart.encode() in tombstones  # the cart's record held its email
    assert r.metrics.registry.get_sample_value("ofsys_erasures_total", {"kind": "cart"}) == 1


def test_a_replaying_partition_applies_the_request_after_its_replay(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    assign_with_control(r, records[:300])
    r.window()
    cart = held_cart(r)
    replaying = [True]
    r.pipeline._control._replaying = lambda partition: replaying[0]
    request(r, orjson.dumps({"v": 1, "cart": cart}))
    r.turn()
    assert cart in r.pipeline.states[0].carts  # waits
    assert len(r.pipeline._control.pending) == 1
    replaying[0] = False
    r.turn()
    assert cart not in r.pipeline.states[0].carts
    assert r.pipeline._control.pending == []


def test_a_request_not_understood_is_skipped_and_its_offset_moves_on(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    assign_with_control(r, records[:100])
    before = r.pipeline.state_snapshot()
    for value in (b"not json", b"[1, 2]", orjson.dumps({"v": 1, "cart": 7})):
        request(r, value)
    r.turn()
    assert r.pipeline.state_snapshot() == before
    r.window()
    r.turn()
    assert r.fakes.consumer.group_committed[(r.pipeline.settings.control_topic, 0)] == 3
    assert r.metrics.registry.get_sample_value("ofsys_erasures_total", {"kind": "cart"}) == 0
