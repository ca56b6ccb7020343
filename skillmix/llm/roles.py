"""Which model plays a role (teacher, judge, student), where it is served, with what key, in which mode.

One resolution for every run (``skillmix dataset``, ``skillmix eval``, ``skillmix doctor``), in this order:

1. the role's own settings (``--judge-model``, ``--judge-base-url``, ``--judge-mode``);
2. ``OPENAI_BASE_URL`` for a role with a model but no base URL (:func:`base_url_for`, the one place that
   reads it besides :class:`skillmix.llm.client.Endpoint`);
3. a judge with neither model nor URL is the teacher's model on the teacher's server;
4. api.openai.com, which needs ``OPENAI_API_KEY`` (refused by name when it is not set).

A :class:`ResolvedModel` says two independent things about a model: whether its requests are **priced**
(an API model: the cap and the plan count them) and **where** it runs (``api``, or a server this run
starts on this machine: ``embedded llama.cpp``, ``transformers``, ``vllm``).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from skillmix.config import ConfigError
from skillmix.llm.client import Endpoint
from skillmix.llm.local import API_KEY_ENV as LOCAL_API_KEY_ENV

API = "api"  # ResolvedModel.where of a model reached over HTTP that this run does not start


@dataclass(frozen=True)
class ResolvedModel:
    role: str
    model: str
    base_url: str | None
    identity: str | None = None  # what the request cache keys on (a local server's random port is not it)
    priced: bool = True  # its requests cost money (False: a server this run starts here)
    where: str = API  # "api", or the engine of a server this run starts here
    mode: str = "chat"  # "completion": a base model (plain text through /v1/completions)

    @property
    def local(self) -> bool:
        return self.where != API

    @property
    def api_key_env(self) -> str:
        """The variable its requests' key is read from: never ``OPENAI_API_KEY`` for a server this run
        starts here (the real key is not sent to a local server)."""
        return LOCAL_API_KEY_ENV if self.local else "OPENAI_API_KEY"

    def describe(self) -> str:
        where = self.where if self.local else (self.base_url or "api.openai.com")
        suffix = " (completion mode: a base model)" if self.mode == "completion" else ""
        return f"{self.model} @ {where}{suffix}"


def base_url_for(base_url: str | None) -> str | None:
    """A role's base URL: its own, else ``OPENAI_BASE_URL``, else None (api.openai.com)."""
    return Endpoint("", base_url).resolved_base_url()


def remote_mode(mode: str) -> str:
    """A remote model is a chat model unless told it is a base model (``--teacher-mode completion``)."""
    return "completion" if mode == "completion" else "chat"


def local_mode(mode: str) -> str:
    """A base model served here (the embedded one) is driven in completion mode unless told ``chat``."""
    return "chat" if mode == "chat" else "completion"


def remote(
    role: str,
    model: str,
    base_url: str | None,
    mode: str = "auto",
    hint: str = "",
    who: str | None = None,
    keyless: bool = False,
) -> ResolvedModel:
    """A model reached over HTTP: its URL resolved, and a missing key for api.openai.com refused by name
    (``who``: how the refusal names it, the role by default); ``keyless``: its requests go to batch files,
    which need no key."""
    url = base_url_for(base_url)
    if url is None and not keyless and not os.environ.get("OPENAI_API_KEY"):
        raise ConfigError(f"the {who or role} uses api.openai.com but OPENAI_API_KEY is not set{hint}")
    return ResolvedModel(role, model, url, mode=remote_mode(mode))


def teacher_and_judge(
    teacher: Any,
    judge: Any,
    embedded: tuple[str, str, str] | None = None,
    keyless: frozenset[str] = frozenset(),
) -> tuple[ResolvedModel, ResolvedModel]:
    """The teacher and the judge from their settings (``model``, ``base_url``, ``mode`` of each).

    ``embedded``: (model name, base URL, identity) of the embedded server that plays both; ``keyless``: the
    roles whose requests go to batch files (no key needed).
    """
    if embedded is not None:
        name, url, identity = embedded
        return tuple(  # type: ignore[return-value]
            ResolvedModel(
                role,
                name,
                url,
                identity,
                priced=False,
                where="embedded llama.cpp",
                mode=local_mode(settings.mode),
            )
            for role, settings in (("teacher", teacher), ("judge", judge))
        )
    if not teacher.model:
        raise ConfigError("a remote teacher needs a model name: --teacher-model (or TEACHER_MODEL=)")
    teacher_model = remote(
        "teacher", teacher.model, teacher.base_url, teacher.mode, keyless="teacher" in keyless
    )
    return teacher_model, resolve_judge(judge, teacher_model, keyless="judge" in keyless)


def judge_defaults(
    model: str | None, base_url: str | None, teacher_model: str | None, teacher_url: str | None
) -> tuple[str | None, str | None]:
    """The judge's model and base URL: a judge left unnamed is the teacher's model, and with neither model
    nor URL it is also on the teacher's server (a judge of its own: its URL, else ``OPENAI_BASE_URL``)."""
    if model is None and base_url is None:
        return teacher_model, teacher_url
    return model or teacher_model, base_url


def resolve_judge(
    judge: Any, teacher: ResolvedModel | None, hint: str = "", keyless: bool = False
) -> ResolvedModel:
    """The judge from its settings (``model``, ``base_url``, ``mode``) and the teacher
    (:func:`judge_defaults`); ``keyless``: its requests go to batch files."""
    model, url = judge_defaults(
        judge.model, judge.base_url, teacher and teacher.model, teacher and teacher.base_url
    )
    if not model:
        raise ConfigError("name the judge: --judge-model NAME")
    return remote("judge", model, url, judge.mode, hint, keyless=keyless)


def embedded_plays_both(teacher: Any, judge: Any) -> bool:
    """No key, no base URL, no model named: the embedded llama.cpp model plays teacher and judge."""
    named = teacher.model or judge.model or base_url_for(teacher.base_url) or judge.base_url
    return not (named or os.environ.get("OPENAI_API_KEY"))


def check_reachable(model: ResolvedModel, timeout: float = 10.0) -> None:
    """Fail fast, before any work, when a base URL does not answer at all."""
    if model.base_url is None:
        return
    url = model.base_url.rstrip("/") + "/models"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer probe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (401/404 are answers); the real requests will tell the rest
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"the {model.role} base URL {model.base_url} does not answer: {reason}") from None


def check_priced(max_usd: float | None, model: ResolvedModel, prices: Any) -> None:
    """Under a cap, a model of unknown price would make the cap meaningless: refuse it by name."""
    if max_usd is not None and model.priced and not prices.is_priced(model.model):
        raise ConfigError(
            f"--max-usd needs the price of the {model.role} model {model.model!r}, which is not known: "
            "give it with --prices FILE (YAML: `MODEL: {input: USD_PER_1M, output: USD_PER_1M}`; "
            "0 for a free local server)"
        )
