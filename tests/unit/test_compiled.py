"""`compiled()` tells the truth about the modules this interpreter actually imports."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

import pipeline.state.partition
from pipeline.compiled import compiled


def test_compiled_says_whether_the_hot_modules_are_extensions() -> None:
    origin = pipeline.state.partition.__file__ or ""
    assert compiled() is origin.endswith(tuple(EXTENSION_SUFFIXES))
