"""The command line as a newcomer meets it: `--help` of every command, `--version`, a
bad number naming its option (one line, exit 2), and the fatal exit as a JSON line."""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import __version__, cli, cli_args
from pipeline.errors import PipelineError
from pipeline.tools import commands as tool_commands

CLI = Path(sys.executable).parent / "ofsys-pipeline"


def _ofsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    [group] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


COMMANDS = sorted(_subparsers())


def test_the_commands() -> None:
    assert COMMANDS == [
        "bench",
        "demo",
        "explain",
        "forget",
        "journey-emulator",
        "produce",
        "replay",
        "run",
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_every_option_help(command: str) -> None:
    parser = _subparsers()[command]
    assert parser.description and len(parser.description) > 40
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.help and len(action.help) > 8, f"{command} {action.option_strings}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command: str) -> None:
    result = _ofsys(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    parser = _subparsers()[command]
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
    assert " ".join(parser.description.split()[:4]) in " ".join(result.stdout.split())


def test_top_level_help_lists_every_command() -> None:
    result = _ofsys("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "--version" in result.stdout


def test_version() -> None:
    result = _ofsys("--version")
    assert result.returncode == 0
    assert result.stdout == f"ofsys-pipeline {__version__}\n"
    assert __version__ == "0.1.0"


def _numeric_options() -> list[tuple[str, str]]:
    """(command, flag) of every option that takes a number, tools' and run's alike."""
    found = []
    for command, parser in _subparsers().items():
        for action in parser._actions:
            numeric = action.type in (
                cli_args.PORT,
                cli_args.POSITIVE_INT,
                cli_args.INT,
                cli_args.POSITIVE,
            )
            numeric = numeric or action.type in (cli_args.FRACTION, cli_args.NON_NEGATIVE)
            if numeric:
                found.append((command, action.option_strings[0]))
    return found


def test_the_tools_numeric_options_are_all_typed() -> None:
    """No option takes a bare int/float, whose error quotes int()'s own message."""
    for parser in _subparsers().values():
        for action in parser._actions:
            assert action.type not in (int, float), action.option_strings
    assert len(_numeric_options()) >= 12


@pytest.mark.parametrize(("command", "flag"), _numeric_options())
def test_a_bad_number_names_the_option_and_what_it_takes(
    command: str, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (the parser `main` uses); the subprocess test below shows the same."""
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args([command, flag, "abc"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"ofsys-pipeline {command}: error: argument {flag}: must be ")
    assert "invalid literal" not in line and " value: " not in line  # argparse's own words


def test_a_bad_number_on_the_command_line_is_one_line_and_exit_2() -> None:
    result = _ofsys("journey-emulator", "--port", "abc")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "ofsys-pipeline journey-emulator: error: argument --port: "
        "must be a port number from 0 to 65535\n"
    )


def test_run_bad_metrics_port_names_the_option() -> None:
    result = subprocess.run(
        [str(CLI), "run", "--metrics-port", "abc"],
        env={
            "PATH": "/usr/bin",
            "OFSYS_TOPIC": "t",
            "OFSYS_JOURNEY_URL": "http://journey.invalid/",
            "OFSYS_ACCOUNT_KEY": "A" * 32,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "ofsys-pipeline: error: --metrics-port must be a port number from 0 to 65535\n"
    )


def _fatal_lines(monkeypatch: pytest.MonkeyPatch, error: Exception) -> tuple[int, list[str]]:
    """Run `ofsys-pipeline produce` in process with its command raising `error`."""

    def failing(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(tool_commands, "cmd_produce", failing)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh process
    monkeypatch.setattr(root, "level", root.level)
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = cli.main(["produce", "--topic", "t"])
    return code, stderr.getvalue().splitlines()


def test_the_fatal_exit_line_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines = _fatal_lines(monkeypatch, PipelineError("Kafka unreachable: timed out"))
    assert code == 1
    [line] = lines
    entry = json.loads(line)
    assert entry["level"] == "critical"
    assert entry["message"] == "exiting: Kafka unreachable: timed out"
    assert entry["ts"].endswith("Z")


def test_an_unexpected_error_exits_with_a_json_line_carrying_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, lines = _fatal_lines(monkeypatch, RuntimeError("boom"))
    assert code == 1
    [line] = lines
    entry = json.loads(line)
    assert entry["level"] == "critical"
    assert "RuntimeError: boom" in entry["error"]


def test_the_emulator_logs_json_with_ts() -> None:
    process = subprocess.Popen(
        [str(CLI), "journey-emulator", "--port", "0", "--account-key", "A" * 32],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        entry = json.loads(process.stderr.readline())
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
    assert entry["message"] == "journey emulator listening"
    assert entry["url"].startswith("http://127.0.0.1:")
    assert entry["ts"].endswith("Z") and entry["level"] == "info"
