"""Whether this process runs the mypyc-compiled hot modules, so a figure can say which.

The build compiles them only when asked (hatch_build.py, docs/deploy.md); a compiled
module is an extension file beside its source, and Python imports it first.
"""

from __future__ import annotations

import importlib.util
from importlib.machinery import EXTENSION_SUFFIXES

# One module of pyproject's compiled list stands for all of them: one build makes them.
PROBE = "pipeline.state.partition"


def compiled() -> bool:
    """True if the hot modules import from mypyc's extensions rather than their sources."""
    spec = importlib.util.find_spec(PROBE)
    origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES))
