"""Test and benchmark support: :mod:`skillmix.testing.fake_openai`, a fake OpenAI-compatible server.

The names below are loaded on first use, so that ``python -m skillmix.testing.fake_openai`` does not import
the module twice and importing :mod:`skillmix.testing` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FakeOpenAIServer",
    "Fault",
    "Reply",
    "RequestRecord",
    "ScriptedResponder",
    "SkillMixResponder",
    "parse_fault",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("skillmix.testing.fake_openai"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
