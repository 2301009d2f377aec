"""Find Prometheus's `prometheus` and `promtool` binaries, installing them if needed.

They come from Debian's `prometheus` package (.ci/run installs it too). The tests that
need them never skip: when a binary is missing this runs apt-get (the tests run as
root), and if that fails too the test fails with apt's output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

_SEARCH = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/bin", "/usr/sbin"]))
_APT = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
_lock = threading.Lock()


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env, timeout=600, check=False
    )


def _install() -> None:
    result = _apt(*_APT)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        update = _apt("apt-get", "update", "-qq")
        result = _apt(*_APT)
        if result.returncode != 0:
            raise RuntimeError(
                "could not install Debian's prometheus package (promtool, prometheus):\n"
                f"apt-get update: {update.stdout}{update.stderr}\n"
                f"apt-get install: {result.stdout}{result.stderr}"
            )


def binary(name: str) -> str:
    """The path of `prometheus` or `promtool`, installing the package when missing."""
    with _lock:
        path = shutil.which(name, path=_SEARCH)
        if path is None:
            _install()
            path = shutil.which(name, path=_SEARCH)
        if path is None:
            raise RuntimeError(f"{name} not found after installing Debian's prometheus package")
        return path
