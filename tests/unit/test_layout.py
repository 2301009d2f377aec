"""The folder listing shows the data flow; the service never imports the tools or the
read-side commands."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
STAGES = ("source", "state", "journey", "runtime", "tools")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, as an absolute dotted name."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_each_stage_is_a_subpackage() -> None:
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage


@pytest.mark.parametrize("apart", ["tools", "inspect"])
def test_the_service_never_imports_the_tools_nor_the_read_side_commands(apart: str) -> None:
    """`tools` (bench, demo, emulator...) and `inspect` (explain, replay) sit above the
    service: only the CLI imports them."""
    service = [
        path
        for path in PACKAGE.rglob("*.py")
        if not {"tools", "inspect"} & set(path.relative_to(PACKAGE).parts) and path.name != "cli.py"
    ]
    assert len(service) > 15
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in _imports(path) if f"pipeline.{apart}" in m
        )
        for path in service
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_inspect_never_imports_the_tools() -> None:
    """The read-side commands run in production pods, where the tools' extras are not."""
    modules = list((PACKAGE / "inspect").glob("*.py"))
    assert len(modules) >= 5
    assert not [m for path in modules for m in _imports(path) if "pipeline.tools" in m]


def test_the_import_check_sees_relative_imports() -> None:
    """The check above would pass vacuously if relative imports were not resolved."""
    loop = _imports(PACKAGE / "runtime" / "loop.py")
    assert "pipeline.runtime.checkpoint" in loop
    assert "pipeline.source.decode" in loop
