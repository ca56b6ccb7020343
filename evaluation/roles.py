"""Who the student is, and how it comes to answer over HTTP, so that the dataset pipeline's client serves it.

Three kinds of student, told apart by ``--student-model`` and ``--student-base-url``:

* **api**: a base URL is given (``vllm serve``, llama.cpp, TGI, ...), or a bare model name such as
  ``gpt-4o-mini`` is served at ``OPENAI_BASE_URL`` or api.openai.com;
* **local**: a folder of a Hugging Face checkpoint, or a Hub id ``org/model[@revision]`` with no base URL:
  served on loopback by :class:`skillmix.llm.local.LocalStudent` (vLLM when it is installed and
  a GPU is visible, else ``transformers``);
* **embedded**: no model at all: the embedded llama.cpp model, for a smoke run (a base model: its scores
  mean nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.evaluation.config import StudentSettings
from skillmix.hub_ids import split_revision
from skillmix.llm.roles import ResolvedModel, local_mode, remote


def student_kind(settings: StudentSettings) -> str:
    """``api``, ``local`` or ``embedded`` (see the module docstring); a chat template without a model to
    serve with it is a ConfigError."""
    if settings.model is None:
        if settings.chat_template:
            raise ConfigError("--chat-template needs --student-model (a local checkpoint or Hub id)")
        return "embedded"
    if settings.base_url:
        return "api"
    if Path(settings.model).exists() or "/" in split_revision(settings.model)[0]:
        return "local"
    return "api"


@dataclass
class Student:
    """A student ready to be served: its identity (the request cache's key) is known before it starts."""

    kind: str
    settings: StudentSettings
    identity: str
    resolved: ResolvedModel | None = None  # an API student (priced, probed before the run)
    local: Any = None  # a LocalStudent, not started yet
    engine: str = "openai"
    served: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.resolved is not None:
            return self.resolved.describe()
        return f"{self.settings.model or 'the embedded model'} ({self.engine}, on this machine)"

    def describe_dict(self) -> dict[str, Any]:
        model, revision = split_revision(self.settings.model) if self.settings.model else (None, None)
        return {"model": model, "revision": revision, "engine": self.engine, "kind": self.kind,
                "base_url": self.resolved.base_url if self.resolved else None, "identity": self.identity,
                **self.served}  # fmt: skip

    @contextlib.contextmanager
    def serve(self, work: Path, log: Callable[[str], None]) -> Iterator[ResolvedModel]:
        """The student answering over HTTP for as long as the block lasts."""
        if self.resolved is not None:
            yield self.resolved
            return
        if self.kind == "embedded":
            from skillmix.llm.embedded import MODEL_NAME, EmbeddedServer

            log("No student named: the embedded Gemma 3 270M model (llama.cpp) answers; a smoke run only.")
            with EmbeddedServer(log_path=work / "embedded-server.log") as server:
                mode = local_mode(self.settings.mode)
                where = "embedded llama.cpp"
                yield ResolvedModel("student", MODEL_NAME, server.base_url, self.identity, False, where, mode)
            return
        self.local.log_path = work / "student-server.log"
        with self.local as local:
            self.engine = local.engine
            self.served = {"engine": local.engine}
            log(f"Student {self.settings.model} served by {local.engine} at {local.base_url}")
            yield ResolvedModel(
                "student", local.model_name, local.base_url, self.identity, priced=False, where=local.engine
            )


def prepare_student(
    settings: StudentSettings, work_hint: Path | None = None, keyless: bool = False
) -> Student:
    """Check the student can be loaded or reached (one ConfigError line if not); start nothing.
    ``keyless``: an API student's requests go to batch files (no key needed)."""
    kind = student_kind(settings)
    if kind == "api":
        assert settings.model is not None
        hint = " (give --student-base-url, or a local folder / org/model id to run it here)"
        who = f"student {settings.model!r}"
        resolved = remote("student", settings.model, settings.base_url, settings.mode, hint, who, keyless)
        return Student(kind, settings, settings.model, resolved=resolved)
    if kind == "embedded":
        from skillmix.llm.embedded import MODEL_NAME

        return Student(kind, settings, f"embedded|{MODEL_NAME}", engine="llama.cpp")
    from skillmix.llm.local import LocalStudent

    assert settings.model is not None
    if settings.mode == "completion":
        raise ConfigError(
            "a local checkpoint is served with its chat template (give --chat-template FILE for a base "
            "model); --student-mode completion is for a base model behind an API (--student-base-url)"
        )
    try:
        local = LocalStudent(settings.model, settings.chat_template).check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Student(kind, settings, local.identity, local=local, engine=local.engine)
