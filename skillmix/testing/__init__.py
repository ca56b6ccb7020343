"""skillmix.testing is a documented testing kit for users: loopback fake OpenAI-compatible server and fake
Hugging Face Hub.

* :mod:`skillmix.testing.fake_openai`: ``FakeOpenAIServer``, a scripted, fault-injecting OpenAI-compatible
  server on loopback (also ``python -m skillmix.testing.fake_openai``);
* :mod:`skillmix.testing.fake_hub`: ``FakeHubServer``, a fake Hugging Face Hub on loopback (repos, commits,
  LFS uploads, tags, downloads, auth; also ``python -m skillmix.testing.fake_hub``), imported from there.

The fake OpenAI server's names below are loaded on first use, so that ``python -m
skillmix.testing.fake_openai`` does not import the package twice and importing :mod:`skillmix.testing`
costs nothing.
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
