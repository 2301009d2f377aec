"""The Journey contract as types: one table of calls, one of dead-letter reasons and one
of retry reasons, each read by the code that uses it and by metrics, with no copy to
drift. The reason tables are checked against every slug the package actually uses."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any, get_args

import pytest
from prometheus_client import CollectorRegistry

from pipeline import errors
from pipeline.errors import DEAD_LETTER_REASONS, RETRY_REASONS
from pipeline.journey import client
from pipeline.journey.commands import CALL_NAMES, CALLS, Kind
from pipeline.metrics import Metrics
from pipeline.tools import emulator_contract as emulator

PACKAGE = Path(errors.__file__).resolve().parent
GOOD: dict[Kind, Any] = {"text": "x", "number": 2490.5, "quantity": 2}
BAD: dict[Kind, list[Any]] = {
    "text": ["", 7, ["x"]],
    "number": ["7", True, [1]],
    "quantity": [-1, 2.0, "2", True],
}


def command(call: str, **args: Any) -> dict[str, Any]:
    return {"id": "e-1/0", "ts": 1, "cartId": None, "email": None, "call": call, "args": args}


def valid_args(call: str) -> dict[str, Any]:
    return {name: GOOD[kind] for name, kind in CALLS[call]}


# calls


def test_the_contract_has_its_eleven_calls() -> None:
    assert len(CALLS) == 11
    assert tuple(CALLS) == CALL_NAMES
    assert {kind for required in CALLS.values() for _, kind in required} == set(get_args(Kind))


def test_the_emulator_validates_from_the_one_table() -> None:
    assert list(emulator._REQUIRED) == list(CALLS)
    for call, required in CALLS.items():
        assert [name for name, _ in emulator._REQUIRED[call]] == [name for name, _ in required]


@pytest.mark.parametrize("call", CALL_NAMES)
def test_the_emulator_accepts_each_call_with_its_required_args(call: str) -> None:
    assert emulator._command_error(command(call, **valid_args(call))) is None


@pytest.mark.parametrize("call", CALL_NAMES)
def test_the_emulator_requires_each_required_arg(call: str) -> None:
    for name, kind in CALLS[call]:
        args = valid_args(call)
        del args[name]
        assert emulator._command_error(command(call, **args)) == f"{call} requires arg {name!r}"
        for bad in BAD[kind]:
            args = {**valid_args(call), name: bad}
            message = emulator._command_error(command(call, **args))
            assert message is not None, (call, name, bad)
            assert message.startswith(f"arg {name!r} must be "), message


def test_the_emulator_refuses_calls_outside_the_table() -> None:
    assert emulator._command_error(command("ECommerce.Refund", idCart="c")) == (
        "unknown call 'ECommerce.Refund'"
    )


def _labels(metrics: Metrics, name: str, label: str) -> list[str]:
    [family] = [f for f in metrics.registry.collect() if f.name == name]
    return [s.labels[label] for s in family.samples if s.name.endswith("_total")]


def test_metrics_labels_come_from_the_tables() -> None:
    metrics = Metrics(CollectorRegistry())
    assert _labels(metrics, "ofsys_commands_delivered", "call") == list(CALL_NAMES)
    assert _labels(metrics, "ofsys_journey_retries", "reason") == list(RETRY_REASONS)
    assert _labels(metrics, "ofsys_dead_letters", "reason") == list(DEAD_LETTER_REASONS)


# reasons


def test_the_reason_tables_are_small_fixed_sets_of_slugs() -> None:
    for table in (DEAD_LETTER_REASONS, RETRY_REASONS):
        assert len(set(table)) == len(table) > 0
        assert all(slug.replace("-", "").replace("_", "").isalpha() for slug in table)
    assert not set(DEAD_LETTER_REASONS) & set(RETRY_REASONS)


def _strings(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


@functools.cache
def _used_reasons() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Every reason slug written in the package -> the files that write it, as
    (dead-letter reasons, retry reasons). Where a slug can be written:
    - DecodeError("slug", …), InvalidEventError(…, reason="slug") and that class's
      default; TransientDeliveryError(…, reason="slug");
    - a string argument of a dead-letter call (`…dead_letters.record/refused(…)`,
      `_produce(…)`);
    - `reason = …` assignments, and `….dead_letters/retries.labels("slug")`."""
    dead: dict[str, set[str]] = {}
    retry: dict[str, set[str]] = {}

    def add(table: dict[str, set[str]], slugs: set[str], path: Path) -> None:
        for slug in slugs:
            table.setdefault(slug, set()).add(str(path.relative_to(PACKAGE)))

    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == "InvalidEventError":
                for fn in node.body:
                    if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                        for arg, default in zip(
                            fn.args.kwonlyargs, fn.args.kw_defaults, strict=True
                        ):
                            if arg.arg == "reason" and default is not None:
                                add(dead, _strings(default), path)
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if "reason" in names and node.value is not None:
                    add(retry if "journey" in path.parts else dead, _strings(node.value), path)
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            keyword = {k.arg: k.value for k in node.keywords}
            if name == "DecodeError" and node.args:
                add(dead, _strings(node.args[0]), path)
            if name in ("DecodeError", "InvalidEventError") and "reason" in keyword:
                add(dead, _strings(keyword["reason"]), path)
            if name == "TransientDeliveryError" and "reason" in keyword:
                add(retry, _strings(keyword["reason"]), path)
            receiver = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
            if name == "_produce" or (
                name in ("record", "refused", "command") and "dead_letter" in receiver
            ):
                add(dead, {a.value for a in node.args if isinstance(a, ast.Constant)}, path)
            if name == "labels" and receiver.endswith("dead_letters"):
                add(dead, _strings(node), path)
            if name == "labels" and receiver.endswith("retries"):
                add(retry, _strings(node), path)
    add(retry, set(client._TRANSIENT.values()), PACKAGE / "journey" / "client.py")
    return dead, retry


def test_every_reason_the_package_uses_is_in_its_table_and_back() -> None:
    dead, retry = _used_reasons()
    unknown = {slug: files for slug, files in dead.items() if slug not in DEAD_LETTER_REASONS}
    assert not unknown, f"dead-letter reasons missing from errors.DEAD_LETTER_REASONS: {unknown}"
    unknown = {slug: files for slug, files in retry.items() if slug not in RETRY_REASONS}
    assert not unknown, f"retry reasons missing from errors.RETRY_REASONS: {unknown}"
    # and no slug in a table that nothing uses (which also proves the search sees them)
    assert set(dead) == set(DEAD_LETTER_REASONS)
    assert set(retry) == set(RETRY_REASONS)


def test_the_reason_search_sees_every_stage() -> None:
    dead, _ = _used_reasons()
    files = set().union(*dead.values())
    assert {f.split("/")[0] for f in files} >= {"source", "runtime", "errors.py"}
