"""The Journey emulator over real HTTP: it must hold the pipeline to the contract."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.tools.emulator import MAX_CONFLICT_EXAMPLES, JourneyEmulator

KEY = "k" * 16 + "0123456789abcdef"
EMPTY_COUNTS = {
    "accepted": 0,
    "duplicates_received": 0,
    "conflicts": 0,
    "conflict_examples": [],
    "duplicate_batches": 0,
    "batches": 0,
    "requests": 0,
    "rejected": 0,
    "faults_injected": 0,
}


def cmd(cid: str, call: str = "ECommerce.SubmitCart", **args: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "ts": 1764000000000,
        "cartId": "c-1",
        "email": None,
        "call": call,
        "args": args or {"idCart": "c-1"},
    }


def add_item(cid: str, **extra: Any) -> dict[str, Any]:
    return cmd(cid, "ECommerce.AddCartItem", idCart="c-1", idProduct="sku-7", quantity=2, **extra)


class Client:
    """One keep-alive connection, like the pipeline's pooled client."""

    def __init__(self, emulator: JourneyEmulator) -> None:
        netloc = urlsplit(emulator.base_url)
        self.conn = http.client.HTTPConnection(netloc.hostname or "", netloc.port, timeout=5)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        data = None if body is None else orjson.dumps(body)
        self.conn.request(method, path, body=data, headers=headers or {})
        resp = self.conn.getresponse()
        raw = resp.read()
        parsed = orjson.loads(raw) if resp.getheader("Content-Type") == "application/json" else raw
        return resp.status, dict(resp.getheaders()), parsed

    def post(
        self, commands: list[dict[str, Any]], batch_id: str = "b-1", key: str = KEY
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": batch_id}
        body = {"batchId": batch_id, "commands": commands}
        return self.request("POST", "/v1/journey", body, headers)

    def ledger(self) -> dict[str, Any]:
        status, _, body = self.request("GET", "/ledger")
        assert status == 200
        return dict(body)

    def metrics(self) -> dict[str, float]:
        """GET /metrics parsed: sample name -> value."""
        status, headers, body = self.request("GET", "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
        families = text_string_to_metric_families(body.decode())
        return {s.name: s.value for f in families for s in f.samples}


@pytest.fixture
def emulator() -> Iterator[JourneyEmulator]:
    with JourneyEmulator(account_key=KEY) as emu:
        yield emu


@pytest.fixture
def client(emulator: JourneyEmulator) -> Iterator[Client]:
    c = Client(emulator)
    yield c
    c.conn.close()


def test_accepts_a_valid_batch_and_records_it_as_received(
    emulator: JourneyEmulator, client: Client
) -> None:
    commands = [add_item("a", productName="Kettle", priceunit=2490.0), cmd("b")]
    status, _, body = client.post(commands)
    assert (status, body) == (200, {"accepted": 2, "duplicates": 0})
    expected = {**EMPTY_COUNTS, "accepted": 2, "batches": 1, "requests": 1}
    assert client.ledger() == {"commands": commands, **expected}
    assert emulator.ledger() == {"commands": commands, **expected}
    assert emulator.url == emulator.base_url + "/v1/journey"


def test_wrong_key_is_401_and_never_echoed(client: Client) -> None:
    status, _, body = client.post([cmd("a")], key="wrong-key-0123456789")
    assert (status, body) == (401, {"error": "unauthorized"})
    assert client.ledger() == {"commands": [], **EMPTY_COUNTS, "requests": 1}


def test_missing_required_arg_and_null_optional_arg_are_named(client: Client) -> None:
    missing = cmd("m", "ECommerce.AddCartItem", idCart="c-1", idProduct="sku-7")
    null = add_item("n", productName=None)
    status, _, body = client.post([cmd("ok"), missing, null])
    assert status == 400
    assert body == {
        "errors": [
            {"id": "m", "message": "ECommerce.AddCartItem requires arg 'quantity'"},
            {"id": "n", "message": "arg 'productName' is null (leave optional args out instead)"},
        ]
    }
    assert client.ledger() == {"commands": [], **EMPTY_COUNTS, "requests": 1, "rejected": 1}


def test_unknown_call_and_bad_types_are_named(client: Client) -> None:
    bad_qty = cmd("q", "ECommerce.AddItem", idTransaction="t", idProduct="p", quantity=-1)
    status, _, body = client.post([cmd("u", "ECommerce.Teleport"), bad_qty])
    assert status == 400
    assert body == {
        "errors": [
            {"id": "u", "message": "unknown call 'ECommerce.Teleport'"},
            {"id": "q", "message": "arg 'quantity' must be an integer >= 0"},
        ]
    }


def test_envelope_errors_are_400_without_names(client: Client) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "other"}
    body = {"batchId": "b-1", "commands": [cmd("a")]}
    status, _, answer = client.request("POST", "/v1/journey", body, headers)
    assert (status, answer) == (400, {"error": "Idempotency-Key header must equal batchId"})
    status, _, answer = client.post([])
    assert (status, answer) == (400, {"error": "commands must be a non-empty list"})
    assert client.ledger()["rejected"] == 2


def test_same_batch_twice_answers_the_same_and_records_once(client: Client) -> None:
    first = client.post([cmd("a"), cmd("b")])
    second = client.post([cmd("a"), cmd("b")])
    assert first[0] == second[0] == 200
    assert first[2] == second[2] == {"accepted": 2, "duplicates": 0}
    ledger = client.ledger()
    assert [c["id"] for c in ledger["commands"]] == ["a", "b"]
    assert (ledger["batches"], ledger["duplicate_batches"], ledger["requests"]) == (1, 1, 2)
    assert ledger["duplicates_received"] == 0


def test_command_id_repeated_in_a_new_batch_counts_as_duplicate(client: Client) -> None:
    assert client.post([cmd("a")], batch_id="b-1")[2] == {"accepted": 1, "duplicates": 0}
    assert client.post([cmd("a"), cmd("c")], batch_id="b-2")[2] == {"accepted": 1, "duplicates": 1}
    ledger = client.ledger()
    assert [c["id"] for c in ledger["commands"]] == ["a", "c"]
    assert (ledger["accepted"], ledger["duplicates_received"], ledger["batches"]) == (2, 1, 2)


def test_same_id_same_content_is_a_duplicate_not_a_conflict(client: Client) -> None:
    # Key order is not content: the comparison is on canonical (sorted-key) JSON.
    reordered = dict(reversed(list(add_item("a").items())))
    assert client.post([add_item("a")], batch_id="b-1")[0] == 200
    assert client.post([reordered], batch_id="b-2")[2] == {"accepted": 0, "duplicates": 1}
    ledger = client.ledger()
    assert (ledger["duplicates_received"], ledger["conflicts"]) == (1, 0)
    assert ledger["conflict_examples"] == []


def test_same_id_different_content_is_a_conflict_in_ledger_and_metrics(
    emulator: JourneyEmulator, client: Client
) -> None:
    first, then = add_item("a"), add_item("a")
    then["args"]["quantity"] = 3
    assert client.post([first, cmd("b")], batch_id="b-1")[0] == 200
    # Answered like Journey would: the first copy stays, the second is a duplicate.
    assert client.post([then, cmd("b")], batch_id="b-2")[2] == {"accepted": 0, "duplicates": 2}
    ledger = client.ledger()
    assert ledger["commands"] == [first, cmd("b")]
    assert (ledger["conflicts"], ledger["duplicates_received"]) == (1, 1)
    assert ledger["conflict_examples"] == [{"id": "a", "first": first, "then": then}]
    assert emulator.ledger()["conflicts"] == 1
    metrics = client.metrics()
    assert metrics["journey_emulator_conflicts_total"] == 1
    assert metrics["journey_emulator_duplicates_received_total"] == 1
    assert metrics["journey_emulator_accepted_total"] == 2
    assert metrics["journey_emulator_batches_total"] == 2
    assert metrics["journey_emulator_requests_total"] == 2
    for name in ("duplicate_batches", "rejected", "faults_injected"):
        assert metrics[f"journey_emulator_{name}_total"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"ts": 1764000000001},
        {"cartId": "c-2"},
        {"email": "a@example.com"},
        {"call": "ECommerce.UpdateCart", "args": {"idCart": "c-1", "TotalPrice": 1.0}},
        {"args": {"idCart": "c-1", "idProduct": "sku-7", "quantity": 2, "productName": "K"}},
    ],
)
def test_any_field_differing_is_a_conflict(client: Client, change: dict[str, Any]) -> None:
    assert client.post([add_item("a")], batch_id="b-1")[0] == 200
    assert client.post([{**add_item("a"), **change}], batch_id="b-2")[0] == 200
    assert client.ledger()["conflicts"] == 1


def test_conflict_within_one_batch_and_examples_are_bounded(client: Client) -> None:
    extra = MAX_CONFLICT_EXAMPLES + 5
    commands = [add_item("a")] + [add_item("a", productName=f"v{i}") for i in range(extra)]
    assert client.post(commands)[2] == {"accepted": 1, "duplicates": extra}
    ledger = client.ledger()
    assert ledger["conflicts"] == extra
    assert len(ledger["conflict_examples"]) == MAX_CONFLICT_EXAMPLES
    assert ledger["conflict_examples"][0]["then"]["args"]["productName"] == "v0"


def test_fail_next_answers_429_with_retry_after_then_recovers(client: Client) -> None:
    status, _, faults = client.request(
        "POST", "/faults", {"fail_next": 1, "status": 429, "retry_after": 7}
    )
    assert (status, faults["fail_next"], faults["status"], faults["retry_after"]) == (
        200,
        1,
        429,
        7,
    )
    status, headers, _ = client.post([cmd("a")])
    assert (status, headers.get("Retry-After")) == (429, "7")
    assert client.request("GET", "/faults")[2]["fail_next"] == 0
    assert client.post([cmd("a")])[0] == 200
    ledger = client.ledger()
    assert (ledger["accepted"], ledger["requests"], ledger["faults_injected"]) == (1, 2, 1)


def test_error_rate_one_faults_every_request_with_503(
    emulator: JourneyEmulator, client: Client
) -> None:
    emulator.set_faults(error_rate=1.0, seed=3)
    statuses = [client.post([cmd("a")])[0] for _ in range(3)]
    assert statuses == [503, 503, 503]
    assert client.ledger()["accepted"] == 0


def test_reject_ids_answers_422_naming_them_and_records_nothing(
    emulator: JourneyEmulator, client: Client
) -> None:
    emulator.set_faults(reject_ids=["b"])
    status, _, body = client.post([cmd("a"), cmd("b")])
    assert (status, body) == (422, {"errors": [{"id": "b", "message": "rejected by emulator"}]})
    assert client.ledger()["commands"] == []
    assert client.post([cmd("a")], batch_id="b-2")[0] == 200


def test_unauthorized_mode_answers_401_until_cleared(client: Client) -> None:
    assert client.request("POST", "/faults", {"unauthorized": True})[0] == 200
    assert client.post([cmd("a")])[:3:2] == (401, {"error": "unauthorized"})
    status, _, faults = client.request("POST", "/faults", {})
    assert (status, faults["unauthorized"]) == (200, False)
    assert client.post([cmd("a")])[0] == 200


def test_invalid_fault_settings_are_400(emulator: JourneyEmulator, client: Client) -> None:
    status, _, body = client.request("POST", "/faults", {"status": 418})
    assert status == 400
    assert "status" in body["error"]
    with pytest.raises(ValueError, match="unknown fault 'bogus'"):
        emulator.set_faults(bogus=1)


def test_reset_clears_ledger_counters_conflicts_and_faults(
    emulator: JourneyEmulator, client: Client
) -> None:
    client.post([cmd("a")])
    client.post([cmd("a", idCart="c-9")], batch_id="b-2")
    assert client.ledger()["conflicts"] == 1
    emulator.set_faults(fail_next=5)
    status, _, body = client.request("DELETE", "/ledger")
    assert (status, body) == (200, {"commands": [], **EMPTY_COUNTS})
    assert emulator.faults()["fail_next"] == 0
    assert client.metrics()["journey_emulator_conflicts_total"] == 0
    # Ids are forgotten: the second content of "a" is now a first copy, not a conflict.
    assert client.post([cmd("a", idCart="c-9")])[2] == {"accepted": 1, "duplicates": 0}
    ledger = client.ledger()  # b-1 was forgotten too: not answered from the cache
    assert (ledger["accepted"], ledger["conflicts"], ledger["duplicate_batches"]) == (1, 0, 0)


def test_healthz_and_unknown_paths(client: Client) -> None:
    assert client.request("GET", "/healthz")[::2] == (200, b"ok")
    assert client.request("GET", "/nope")[0] == 404
    assert client.request("DELETE", "/v1/journey")[0] == 404


def test_stop_cuts_keep_alive_connections(emulator: JourneyEmulator, client: Client) -> None:
    assert client.post([cmd("a")])[0] == 200
    emulator.stop()
    with pytest.raises(OSError):
        client.post([cmd("b")], batch_id="b-2")


def test_receipts_give_each_new_command_its_ts_and_the_request_arrival(
    emulator: JourneyEmulator, client: Client
) -> None:
    assert client.request("GET", "/receipts")[2] == {"first_request_ms": None, "receipts": []}
    before = time.time() * 1000
    client.post([cmd("a"), add_item("b")])
    client.post([cmd("a")], batch_id="b-2")  # a duplicate: no second receipt
    after = time.time() * 1000
    status, _, doc = client.request("GET", "/receipts")
    assert status == 200
    assert before <= doc["first_request_ms"] <= after
    assert [ts for ts, _ in doc["receipts"]] == [1764000000000, 1764000000000]
    assert all(before <= received <= after for _, received in doc["receipts"])
    assert doc["receipts"][0][1] == doc["receipts"][1][1]  # one batch, one arrival
    emulator.reset()
    assert emulator.receipts() == {"first_request_ms": None, "receipts": []}
