"""`ofsys-pipeline explain` and `replay` against Tansu and the Journey emulator: they
make the commands the running pipeline sent (same ids, same contents), start from the
changelog as of the range's start, send nothing on a dry run, and answer bad and empty
ranges as documented."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import orjson

from pipeline.source.partitioner import PARTITIONERS
from pipeline.tools.emulator import JourneyEmulator

from .conftest import KEY, Harness

CART = "c-explain-1"
KETTLE = {"id": "sku-7", "name": "Kettle", "unitSalePrice": 2490.0}
MUG = {"id": "sku-9", "name": "Mug", "unitSalePrice": 390.0}


def event(n: int, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"x{n}", "name": name, "timestamp": 0, "cart": {"id": CART}, **fields}


BEFORE = [  # before the range start T1: in the changelog by then
    event(1, "Viewed Page", user={"email": "ana@example.org"}),
    event(2, "Added Product", product=KETTLE, quantity=1),
    event(3, "Viewed Product Detail", product=MUG),
]
AFTER = [  # in the range: the cart goes on from the state the changelog holds
    event(4, "Added Product", product=MUG, quantity=2),
    event(5, "Removed Product", product=MUG, quantity=1),
    event(
        6,
        "Completed Transaction",
        transaction={
            "orderId": "o-9",
            "cartId": CART,
            "total": 2880.0,
            "lineItems": [
                {"product": KETTLE, "quantity": 1, "subtotal": 2490.0},
                {"product": MUG, "quantity": 1, "subtotal": 390.0},
            ],
        },
    ),
]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def now_ms() -> int:
    return int(time.time() * 1000)


def elsewhere() -> str:
    """A record key the producers' partitioner puts on another partition than CART's."""
    home = PARTITIONERS["murmur2"](CART.encode(), 4)
    return next(
        k
        for k in (f"user-{i}" for i in range(99))
        if PARTITIONERS["murmur2"](k.encode(), 4) != home
    )


def send_apart(harness: Harness, events: list[dict[str, Any]]) -> None:
    """One event per pipeline window (flush interval 200 ms), as a shopper clicks; each
    stamped when sent (no trigger falls due during the test). x5 is keyed by a user id
    on another partition: the pipeline re-keys it to CART's partition of the
    repartition topic, where explain and replay read it too."""
    for ev in events:
        stamped = {**ev, "timestamp": now_ms()}
        key = elsewhere() if ev["id"] == "x5" else CART
        harness.produce([(key, harness.family.encode_single_object(stamped))])
        time.sleep(0.5)


def test_explain_and_replay_make_what_the_pipeline_sent(harness: Harness) -> None:
    harness.start()
    start = now_ms()
    send_apart(harness, BEFORE)
    harness.wait_committed(len(BEFORE), what="the first events committed")
    first = harness.commands()
    time.sleep(0.3)
    t1 = now_ms()  # the changelog holds the first events' state by now
    time.sleep(0.3)
    send_apart(harness, [*AFTER, AFTER[-1]])  # the transaction delivered twice
    harness.wait_committed(len(BEFORE) + len(AFTER) + 1, what="every event committed")
    sent = harness.commands()
    later = sent[len(first) :]
    assert first and later
    env = {**harness.env(), "OFSYS_LOG_LEVEL": "WARNING"}

    # explain from the beginning: every command the pipeline sent, event by event
    whole = cli(env, "explain", "--cart", CART)
    assert whole.returncode == 0, whole.stderr
    assert "state empty" in whole.stderr
    steps = lines(whole.stdout)
    assert [s["event"]["id"] for s in steps] == ["x1", "x2", "x3", "x4", "x5", "x6", "x6"]
    assert steps[4]["topic"] == f"g-{harness.topic}.{harness.topic}.repartition"
    assert [s["outcome"] for s in steps][-1] == "duplicate"
    assert [c for s in steps for c in s["commands"]] == sent

    # from T1: the state comes from the changelog, and the cart's versions go on
    ranged = cli(env, "explain", "--cart", CART, "--from", str(t1))
    assert ranged.returncode == 0, ranged.stderr
    assert f"g-{harness.topic}.{harness.topic}.changelog[" in ranged.stderr
    assert [c for s in lines(ranged.stdout) for c in s["commands"]] == later
    table = cli(env, "explain", "--cart", CART, "--from", str(t1), "--format", "table")
    assert table.returncode == 0, table.stderr
    assert all(c["id"] in table.stdout for c in later)
    assert "Completed Transaction" in table.stdout

    with JourneyEmulator(account_key=KEY) as fresh:
        fresh_env = {**env, "OFSYS_JOURNEY_URL": fresh.url}
        span = ["--from", str(start - 1), "--to", str(now_ms())]

        dry = cli(fresh_env, "replay", *span, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        *printed, summary = lines(dry.stdout)
        assert printed == sent
        assert summary["sent"] == 0 and summary["dry_run"]
        assert fresh.counters()["accepted"] == 0

        refused = sent[0]["id"]  # the Track: Journey names it as rejected
        fresh.set_faults(fail_next=1, status=429, retry_after=1, reject_ids=[refused])
        began = time.monotonic()
        done = cli(fresh_env, "replay", *span, "--cart", CART)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - began >= 1.0  # Retry-After honoured
        summary = lines(done.stdout)[-1]
        # CART's partition: its 6 input records and x5's re-keyed copy
        assert summary["events"] == len(BEFORE) + len(AFTER) + 1
        assert summary["sent"] == len(sent)
        assert (summary["accepted"], summary["rejected"]) == (len(sent) - 1, 1)
        assert f"rejected {refused}" in done.stderr
        ledger = fresh.ledger()
        assert ledger["commands"] == sent[1:]
        assert ledger["conflicts"] == 0

    # into the Journey that has them all: the same ids and contents, kept once
    again = cli(env, "replay", "--from", str(start - 1), "--to", str(now_ms()))
    assert again.returncode == 0, again.stderr
    summary = lines(again.stdout)[-1]
    assert summary["events"] == len(BEFORE) + len(AFTER) + 2  # x5 twice: input, re-keyed
    assert summary["accepted"] == summary["sent"] == len(sent)
    assert harness.commands() == sent  # and the journey fixture checks 0 conflicts


def test_bad_and_empty_ranges(harness: Harness) -> None:
    env = {**harness.env(), "OFSYS_LOG_LEVEL": "WARNING"}
    harness.send(event(1, "Added Product", product=KETTLE, quantity=1))

    for bad in (
        ["--from", "yesterday", "--to", "1"],
        ["--from", "2026-01-02", "--to", "2026-01-01"],
    ):
        result = cli(env, "replay", *bad)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "error" in result.stderr
        assert not result.stdout

    empty = ["--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z"]
    replayed = cli(env, "replay", *empty)
    assert replayed.returncode == 0, replayed.stderr
    assert "no records" in replayed.stderr
    assert lines(replayed.stdout)[-1]["events"] == 0
    explained = cli(env, "explain", "--cart", CART, *empty)
    assert explained.returncode == 0, explained.stderr
    assert "no events" in explained.stderr and not explained.stdout
    assert harness.journey.counters()["accepted"] == 0
