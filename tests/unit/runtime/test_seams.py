"""The runtime's seams: real clients only in wiring, fakes never in the runtime, one
rule for poll staleness."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.runtime.wiring import MIN_POLL_STALE_S, poll_stale_s

from .conftest import settings

RUNTIME = Path(__file__).resolve().parents[3] / "pipeline" / "runtime"
# modules that own a client of their own (the producer, restore and lag consumers)
OWN_CLIENTS = {"wiring.py", "outputs.py", "changelog.py", "lag.py"}


def _constructed(path: Path) -> set[str]:
    return {
        node.func.id
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }


def test_the_loop_builds_no_client_of_its_own() -> None:
    clients = {"Consumer", "Producer", "AdminClient", "JourneyClient", "DeliveryWorker"}
    for path in RUNTIME.glob("*.py"):
        if path.name not in OWN_CLIENTS:
            assert not _constructed(path) & clients, path.name


def test_the_runtime_never_imports_the_fakes() -> None:
    for path in RUNTIME.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "testing" not in (node.module or ""), path.name
                assert all(alias.name != "testing" for alias in node.names), path.name
            elif isinstance(node, ast.Import):
                assert all("testing" not in alias.name for alias in node.names), path.name


def test_one_rule_for_poll_staleness() -> None:
    assert poll_stale_s(settings(OFSYS_FLUSH_INTERVAL_MS="1000")) == MIN_POLL_STALE_S
    assert poll_stale_s(settings(OFSYS_FLUSH_INTERVAL_MS="20000")) == 60.0
