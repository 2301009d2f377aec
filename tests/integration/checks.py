"""What the integration tests check Journey's ledger against."""

from __future__ import annotations

from collections import Counter

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.runtime import topics
from pipeline.source.identity import Identity
from pipeline.source.normalise import normalise
from pipeline.source.schemas import SchemaFamily
from pipeline.state.partition import Cart, PartitionState
from pipeline.tools.broker import EmbeddedBroker
from pipeline.tools.emulator import JourneyEmulator
from pipeline.tools.traffic import Encoder, ShopTraffic

_admins: dict[str, AdminClient] = {}


def admin_for(broker: EmbeddedBroker) -> AdminClient:
    """One admin client per broker, reused: tests poll the committed offsets ten times a
    second, and a client per call is a new connection and threads each time."""
    admin = _admins.get(broker.bootstrap)
    if admin is None:
        admin = _admins[broker.bootstrap] = AdminClient({"bootstrap.servers": broker.bootstrap})
    return admin


def committed(broker: EmbeddedBroker, group: str, topic: str) -> dict[int, int]:
    admin = admin_for(broker)
    count = topics.partitions(admin, topic) or 1
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(count)])
    result = admin.list_consumer_group_offsets([request])[group].result(10)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def wait_committed(
    broker: EmbeddedBroker,
    group: str,
    topic: str,
    count: int,
    timeout_s: float = 90.0,
    what: str = "every record committed",
) -> None:
    """Wait until the group's committed offsets on `topic` add up to `count` records."""
    from .conftest import wait_for

    seen: dict[int, int] = {}

    def done() -> bool:
        seen.clear()
        seen.update(committed(broker, group, topic))
        return sum(seen.values()) == count

    try:
        wait_for(done, timeout_s, what)
    except AssertionError as exc:  # say which partitions fell short
        raise AssertionError(
            f"{exc}; committed per partition: {dict(sorted(seen.items()))}"
        ) from None


def oracle(family: SchemaFamily, values: list[bytes]) -> PartitionState:
    """What Journey must end up holding: the events folded by one state, in order."""
    from pipeline.errors import DecodeError, InvalidEventError
    from pipeline.source.decode import SingleObjectDecoder

    decode, identity, state = SingleObjectDecoder(family), Identity(), PartitionState()
    for value in values:
        try:
            change = normalise(decode(value), identity, {})
        except (DecodeError, InvalidEventError):
            continue
        if change is not None:
            state.apply(change)
    state.flush()
    return state


CartLines = dict[str, tuple[int, float | None, str | None]]  # pid -> (quantity, price, name)
CartView = tuple[float | str | None, CartLines]  # (TotalPrice, lines)
NO_ADD_CART = "(a cart command came before its AddCart)"


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def journey_view(journey: JourneyEmulator) -> tuple[dict[str, CartView], list[str]]:
    """Replay the ledger: each cart as Journey holds it (the TotalPrice of its last
    AddCart/UpdateCart, and per product the quantity, unit price and name of its last
    AddCartItem), and the transactions received. A cart command before the cart's
    AddCart leaves the total as NO_ADD_CART, so the cart compares unequal."""
    carts: dict[str, tuple[list[float | str | None], CartLines]] = {}
    transactions = []

    def held(cart_id: str) -> tuple[list[float | str | None], CartLines]:
        return carts.setdefault(cart_id, ([NO_ADD_CART], {}))

    for command in journey.ledger()["commands"]:
        call, args = command["call"], command["args"]
        if call == "ECommerce.AddCart":
            carts[args["idCart"]] = ([_money(args.get("TotalPrice"))], {})
        elif call == "ECommerce.UpdateCart":
            total = held(args["idCart"])[0]
            if total[0] != NO_ADD_CART:
                total[0] = _money(args.get("TotalPrice"))
        elif call == "ECommerce.AddCartItem":
            held(args["idCart"])[1][args["idProduct"]] = (
                args["quantity"],
                _money(args.get("priceunit")),
                args.get("productName"),
            )
        elif call == "ECommerce.RemoveCartItem":
            held(args["idCart"])[1].pop(args["idProduct"], None)
        elif call == "ECommerce.AddTransaction":
            transactions.append(args["idTransaction"])
            carts.pop(args.get("idCart"), None)
    return {cid: (total[0], lines) for cid, (total, lines) in carts.items()}, transactions


def truth_view(cart: Cart) -> CartView:
    """A true cart in the form `journey_view` gives: its total, and per product the
    quantity, unit price and name."""
    return (
        _money(cart.total),
        {pid: (line.quantity, _money(line.price), line.name) for pid, line in cart.lines.items()},
    )


def shop_records(family: SchemaFamily, count: int, seed: int) -> list[tuple[str, bytes]]:
    encode = Encoder(family)
    traffic = iter(ShopTraffic(seed=seed, visitors=200, duplicate_rate=0.05))
    out = []
    while len(out) < count:
        key, ev, _ = next(traffic)
        assert ev is not None
        out.append((key, encode(ev)))
    return out


def distinct_duplicates(journey: JourneyEmulator) -> int:
    """Logical commands Journey kept more than once under different ids: a transaction
    added twice, or the same email tracked twice for one cart (the generator never
    changes a visitor's address once known)."""
    kept: Counter[tuple[str, ...]] = Counter()
    for command in journey.ledger()["commands"]:
        call, args = command["call"], command["args"]
        if call == "ECommerce.AddTransaction":
            kept[(call, args["idTransaction"])] += 1
        elif call == "Track":
            kept[(call, str(command["cartId"]), args["f_EMail"])] += 1
    return sum(n - 1 for n in kept.values() if n > 1)


def assert_nothing_lost_or_doubled(
    journey: JourneyEmulator, family: SchemaFamily, records: list[tuple[str, bytes]]
) -> None:
    """Journey holds what an uninterrupted run over the same input gives (the events
    folded by one state in order: the final carts, with their quantities, unit prices,
    product names and totals, and the transactions), and no logical command twice."""
    truth = oracle(family, [value for _, value in records])
    carts, transactions = journey_view(journey)
    assert distinct_duplicates(journey) == 0
    assert sorted(transactions) == sorted(truth.orders)
    true_carts = {
        cid: Cart.load(cart) if isinstance(cart, bytes) else cart
        for cid, cart in truth.carts.items()
    }
    open_carts = {cid: truth_view(cart) for cid, cart in true_carts.items() if cart.created}
    held = {cid: carts.get(cid) for cid in open_carts}
    wrong = {cid: (held[cid], want) for cid, want in open_carts.items() if held[cid] != want}
    if wrong:
        first = next(iter(wrong))
        trail = [
            (c["id"], c["call"], c["args"])
            for c in journey.ledger()["commands"]
            if c["cartId"] == first
        ]
        raise AssertionError(
            f"{len(wrong)} of {len(open_carts)} carts differ; {first}: "
            f"Journey (total, {{product: (quantity, price, name)}}) {wrong[first][0]}, "
            f"truth {wrong[first][1]}; its commands: "
            f"{trail}"
        )
