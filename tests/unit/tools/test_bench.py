"""The bench's pure parts: traffic shapes, the memory-shape backlog, percentiles, and
the `bench` command line (no broker, no timing)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.cli import build_parser
from pipeline.errors import DecodeError
from pipeline.source.decode import SingleObjectDecoder
from pipeline.source.schemas import load_family
from pipeline.tools.bench_parts import loop_thread_cpu_s
from pipeline.tools.bench_shapes import (
    SHAPES,
    cart_backlog,
    latency_ms,
    percentile,
    restamped,
    timestamp_span,
    traffic,
)
from pipeline.tools.traffic import _STEPS, Encoder, ShopTraffic, _steps, encoded


def names(shape: str, count: int) -> Counter[str]:
    events = itertools.islice(traffic(shape, clock=lambda: 1), count)
    return Counter(event["name"] for _, event, bad in events if event is not None and not bad)


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (1, 50, 95, 99, 100)] == [1, 50, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3], 50) == 2
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_is_receipt_minus_event_time_per_command() -> None:
    receipts = [[1000, 1000 + ms] for ms in range(100, 0, -1)]  # 1..100 ms, unordered
    assert latency_ms(receipts) == {
        "commands": 100,
        "p50_ms": 50,
        "p95_ms": 95,
        "p99_ms": 99,
        "max_ms": 100,
    }
    assert latency_ms([]) == {"commands": 0}


def test_default_step_mix_is_the_original_table_itself() -> None:
    assert _steps(None) is _STEPS
    assert _steps(0.35) == pytest.approx(_STEPS)
    scaled = _steps(0.5)
    assert scaled[0] == 0.5
    assert scaled == tuple(sorted(scaled))
    assert scaled[-1] == pytest.approx(0.5 + (0.97 - 0.35) * 0.5 / 0.65)
    with pytest.raises(ValueError, match="page_views"):
        _steps(1.0)


def lines_per_page_view(shape: str, count: int) -> float:
    views = [
        len(event["cart"]["lineItems"])
        for _, event, _ in itertools.islice(traffic(shape, clock=lambda: 1), count)
        if event is not None and event["name"] == "Viewed Page"
    ]
    return sum(views) / len(views)


def test_heavy_carts_is_about_40_percent_page_views_with_several_lines() -> None:
    assert SHAPES["heavy-carts"]["visitors"] >= 20_000
    counts = names("heavy-carts", 40_000)
    assert counts["Viewed Page"] / sum(counts.values()) == pytest.approx(0.40, abs=0.02)
    assert lines_per_page_view("heavy-carts", 20_000) >= 4  # several lines, every page view
    assert lines_per_page_view("default", 20_000) < 2


def test_cart_lines_start_each_new_visitor_with_a_saved_cart() -> None:
    first = next(
        event
        for _, event, _ in ShopTraffic(seed=3, visitors=1, cart_lines=3, page_views=0.99)
        if event is not None and event["name"] == "Viewed Page"
    )
    assert sum(line["quantity"] for line in first["cart"]["lineItems"]) == 3


def test_cart_backlog_is_two_added_products_per_cart_the_first_with_the_email() -> None:
    events = list(cart_backlog(1000, clock=lambda: 5))
    assert len(events) == 2000
    assert len({event["id"] for _, event, _ in events}) == 2000
    assert len({key for key, _, _ in events}) == 1000
    first, second = events[0][1], events[1][1]
    assert (first["name"], second["name"]) == ("Added Product", "Added Product")
    assert first["user"] == {"email": "visitor0@example.com"} and "user" not in second
    assert events[0][0] == first["cart"]["id"] == second["cart"]["id"] == "c-0"
    assert [e["id"] for _, e, _ in cart_backlog(3)] == [e["id"] for _, e, _ in events[:6]]


def test_bench_arguments_and_their_defaults() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench"])
    assert (args.shape, args.events, args.partitions, args.runs) == ("default", 200_000, 4, 1)
    assert (args.rate, args.duration, args.journey_latency_ms) == (None, 30.0, 0.0)
    assert (args.backlog, args.backlog_shape, args.no_changelog) == (None, "traffic", False)
    args = parser.parse_args(
        ["bench", "--backlog", "200_000,1000000", "--backlog-shape", "carts", "--rate", "5000"]
    )
    assert (args.backlog, args.backlog_shape, args.rate) == ([200_000, 1_000_000], "carts", 5000)
    for name in SHAPES:  # every shape is offered (and "tiny" is refused, below)
        assert parser.parse_args(["bench", "--shape", name]).shape == name


@pytest.mark.parametrize(
    "argv",
    [
        ["--shape", "tiny"],
        ["--events", "0"],
        ["--runs", "-1"],
        ["--rate", "fast"],
        ["--backlog", "10,0"],
        ["--backlog-shape", "visitors"],
    ],
)
def test_bad_bench_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", *argv])
    assert exit_info.value.code == 2


def test_negative_journey_latency_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--journey-latency-ms", "-5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_child_runs_production_defaults_but_the_session_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.tools.bench_process import child_env

    monkeypatch.setenv("OFSYS_FLUSH_INTERVAL_MS", "5")  # a developer's shell setting
    env = child_env("b:1", "t", "g", "http://j/v1/journey", 9999, changelog=False)
    ofsys = {k: v for k, v in env.items() if k.startswith("OFSYS_")}
    assert "OFSYS_FLUSH_INTERVAL_MS" not in ofsys
    assert ofsys["OFSYS_KAFKA_SESSION_TIMEOUT_MS"] == "6000"
    assert ofsys["OFSYS_CHANGELOG"] == "false"
    assert set(ofsys) == {
        "OFSYS_KAFKA_BOOTSTRAP_SERVERS",
        "OFSYS_TOPIC",
        "OFSYS_GROUP_ID",
        "OFSYS_JOURNEY_URL",
        "OFSYS_ACCOUNT_KEY",
        "OFSYS_METRICS_PORT",
        "OFSYS_KAFKA_SESSION_TIMEOUT_MS",
        "OFSYS_CHANGELOG",
    }
    assert child_env("b:1", "t", "g", "u", 1, changelog=True)["OFSYS_CHANGELOG"] == "true"


def test_restamped_sends_each_event_with_the_time_it_is_pulled() -> None:
    family = load_family("site_event")
    decode = SingleObjectDecoder(family).record
    made_at = traffic("default", clock=lambda: 1_764_000_000_000)
    made = list(itertools.islice(encoded(made_at, Encoder(family)), 300))
    events = {value: _decoded(decode, value) for _, value in made}
    assert sum(event is not None for event in events.values()) > 250
    stamps = iter(range(1_796_000_000_000, 1_796_000_000_300))
    out = list(restamped(iter(made), lambda: next(stamps)))
    assert [key for key, _ in out] == [key for key, _ in made]
    restamped_events = 0
    for (_, before), (_, after) in zip(made, out, strict=True):
        event = events[before]
        if event is None:  # the traffic's bad records: sent, stamped or not, still bad
            assert _decoded(decode, after) is None
            continue
        stamped = decode(after)
        assert 1_796_000_000_000 <= stamped["timestamp"] < 1_796_000_000_300
        assert stamped == {**event, "timestamp": stamped["timestamp"]}
        restamped_events += 1
    assert restamped_events == sum(events[value] is not None for _, value in made)  # replays too
    # a stamp that needs more bytes than the one made leaves the value as it was
    value = next(v for v, event in events.items() if event is not None)
    assert list(restamped(iter([("k", value)]), lambda: 2**50)) == [("k", value)]
    assert timestamp_span(b"\x00\x00\x00\x00\x01") is None  # not single-object encoding
    assert timestamp_span(b"\xc3\x01" + bytes(8) + b"\x80") is None  # cut short


def _decoded(decode: Callable[[bytes], dict[str, Any]], value: bytes) -> dict[str, Any] | None:
    try:
        return decode(value)
    except DecodeError:
        return None


def test_loop_thread_cpu_is_the_first_threads_share_of_the_process_cpu() -> None:
    """Read from /proc as the bench reads the pipeline's, with this test on the
    process's first thread: CPU spent by another thread is in the process's CPU but not
    in the first thread's; CPU the first thread spends is. A process that is not there
    reads as 0."""
    assert threading.get_native_id() == os.getpid()

    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    before, process_before = loop_thread_cpu_s(os.getpid()), time.process_time()
    other = threading.Thread(target=spin, args=(0.3,))
    other.start()
    other.join()
    middle = loop_thread_cpu_s(os.getpid())
    assert time.process_time() - process_before >= 0.3
    assert middle - before <= 0.1  # the other thread's spin is not the first thread's
    spin(0.3)
    after = loop_thread_cpu_s(os.getpid())
    assert after - middle >= 0.28  # clock ticks round to 10 ms
    assert after <= time.process_time() + 0.02
    assert loop_thread_cpu_s(2**22 + 1) == 0.0  # above Linux's pid_max: no such process
