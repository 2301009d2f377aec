"""Build hook: wheels carry the hot modules compiled with mypyc; editable installs stay pure.

hatch-mypyc does the compiling (it builds the extensions in place, beside the sources,
and the wheel takes them from there); it does not fall back: with no C compiler or no
Python headers it fails. This subclass adds three choices. An editable install (`make
install`) is pure Python, so an edited module is never shadowed by a stale extension.
A wheel without a toolchain, or with `OFSYS_PURE_PYTHON=1`, is pure Python and says
why. And once a compiled wheel is built, the extensions are removed from the source
tree again, for the same reason. A toolchain that fails to compile is an error.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from typing import Any

from hatch_mypyc.plugin import MypycBuildHook


def pure_python_reason() -> str | None:
    """Why this build must stay pure Python, or None if mypyc can compile here."""
    if os.environ.get("OFSYS_PURE_PYTHON", "") not in ("", "0"):
        return "OFSYS_PURE_PYTHON is set"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} not on PATH)"
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h)"
    return None


class CompiledHotModules(MypycBuildHook):  # type: ignore[misc]
    """hatch-mypyc's hook, skipped (and its in-place artefacts removed) when pure."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        reason = "an editable install" if version == "editable" else pure_python_reason()
        if reason is None:
            self.app.display_info("ofsys-pipeline: compiling the hot modules with mypyc")
            super().initialize(version, build_data)
            return
        # A compiled module left in place by an earlier build would shadow its source.
        self.clean([version])
        self.app.display_warning(f"ofsys-pipeline: pure Python build: {reason}")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """The wheel has the extensions: take them out of the source tree again."""
        if self.target_name == "wheel" and not build_data.get("pure_python", True):
            self.clean([version])


def get_build_hook() -> type[CompiledHotModules]:
    """The hook hatchling loads from this file (it also sees hatch-mypyc's base class)."""
    return CompiledHotModules
