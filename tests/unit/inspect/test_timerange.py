"""The range of `explain` and `replay`: ISO 8601 or epoch ms; a bad one is a ConfigError."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.inspect.timerange import TimeRange, iso, parse_time

NOON = 1_795_608_000_000  # 2026-11-25T12:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T12:00:00Z",
        "2026-11-25T12:00:00.000Z",
        "2026-11-25T13:00:00+01:00",
        "2026-11-25T12:00:00",  # no zone: UTC
        "2026-11-25 12:00",
        str(NOON),
    ],
)
def test_times_in_either_form(text: str) -> None:
    assert parse_time(text, "--from") == NOON


def test_a_date_is_its_utc_midnight() -> None:
    assert parse_time("2026-11-25", "--to") == NOON - 12 * 3_600_000


@pytest.mark.parametrize("text", ["yesterday", "", "12:00", "2026-13-01", "-5", "1.5e12"])
def test_unparsable_times_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--to .* neither ISO 8601"):
        parse_time(text, "--to")


def test_from_after_to_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--from 2026-11-25T12:00:00.001Z is after --to"):
        TimeRange.parse(str(NOON + 1), str(NOON))


def test_bounds_are_inclusive_and_may_be_open() -> None:
    span = TimeRange.parse(str(NOON), str(NOON + 10))
    assert NOON in span and NOON + 10 in span
    assert NOON - 1 not in span and NOON + 11 not in span
    assert 0 in TimeRange(None, None)
    assert TimeRange.parse(None, str(NOON)).end_ms() == NOON
    assert iso(NOON) == "2026-11-25T12:00:00.000Z"
    assert TimeRange(None, None).describe() == "between the beginning and the end"


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--from", "soon", "--to", "1"],
        ["replay", "--from", "2026-01-02", "--to", "2026-01-01"],
        ["explain", "--cart", "c-1", "--to", "later"],
    ],
)
def test_a_bad_range_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)  # the range is checked before any setting or broker
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ofsys-pipeline: error: --")
