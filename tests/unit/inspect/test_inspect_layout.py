"""The read-side commands sit above the service: the service never imports them, and
they never import the tools (they run in production pods)."""

from __future__ import annotations

from tests.unit.test_layout import PACKAGE, _imports


def test_the_service_never_imports_inspect() -> None:
    service = [
        path
        for path in PACKAGE.rglob("*.py")
        if not {"inspect", "tools"} & set(path.relative_to(PACKAGE).parts) and path.name != "cli.py"
    ]
    assert len(service) > 15
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if "pipeline.inspect" in m)
        for path in service
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_inspect_never_imports_the_tools() -> None:
    modules = list((PACKAGE / "inspect").glob("*.py"))
    assert len(modules) >= 5
    assert not [m for path in modules for m in _imports(path) if "pipeline.tools" in m]
