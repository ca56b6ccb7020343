"""A Hugging Face checkpoint on this machine behind an OpenAI-compatible server on loopback (the local student
of ``skillmix eval``), so that it is reached through the project's one client (cache, retries, costs)::

    from skillmix.llm.local import LocalStudent
    from skillmix.llm.client import LLMClient

    with LocalStudent("out/student", chat_template=None, log_path=run / "student.log") as student:
        client = LLMClient(student.endpoint(), cache=cache)  # model_name, base_url and identity
        await client.complete(messages, temperature=0, max_tokens=512, seed=1)

``model`` is a local folder (with a ``config.json``) or a Hub model id with an optional ``@revision``
(:func:`skillmix.hub_ids.split_revision`). Everything that can fail is checked before anything starts,
each as a one-line :class:`ValueError`: a folder that does not exist or has no ``config.json``, a Hub id
that does not resolve (online, or in the local cache when offline), a tokenizer that does not load, a
model without a chat template and no ``chat_template`` file. The server is ``vllm serve`` when vLLM is
installed and torch sees a CUDA GPU (:func:`choose_engine`), else :mod:`skillmix.llm.hf_server`; it runs
in a process group of its own and is stopped with it (:class:`skillmix.processes.ChildServer`). A server
that dies or does not answer in time is a :class:`StudentServerError` ending with its log.

The real ``OPENAI_API_KEY`` never reaches the server: its process does not inherit it
(:func:`server_environment`), and its requests carry the key named by :data:`API_KEY_ENV` (usually unset:
a placeholder), as do those of every server a run starts here
(:attr:`skillmix.llm.roles.ResolvedModel.api_key_env`).

The :attr:`LocalStudent.identity` (what the request cache keys on instead of the random port) names the
model and its revision and fingerprints its files: a Hub model by its commit, a folder by the contents of
its configuration, tokenizer and chat template files and the name, size and modification time of its
weight files (retraining into the same folder changes it; a large model is not read). The engine is not
part of it: vLLM and transformers serve the same model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmix.hub_ids import is_hub_id, split_revision
from skillmix.processes import ChildServer, free_port

ENGINES = ("transformers", "vllm")
IDENTITY_PREFIX = "hf-student"
API_KEY_ENV = "SKILLMIX_STUDENT_API_KEY"  # never OPENAI_API_KEY: the real key is not sent to a local server
_CONTENT_FILES = {"config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json",
                  "vocab.json", "vocab.txt", "merges.txt", "spiece.model"}  # fmt: skip
_CONTENT_PREFIXES = ("tokenizer", "chat_template")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
_find_spec = importlib.util.find_spec  # a seam for tests


class StudentServerError(RuntimeError):
    """The student's server died before it was ready or did not answer in time."""


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: a local folder, or a Hub repository at a resolved commit."""

    model: str  # the folder's absolute path, or the Hub id
    folder: Path | None
    revision: str | None  # the commit of a Hub model; None for a folder

    @property
    def name(self) -> str:
        """The model's name in requests: the Hub id, or the folder's name."""
        return self.model if self.folder is None else self.folder.name


def resolve_model(model: str) -> ModelSource:
    """``model`` as a folder or a Hub id at a commit; a one-line ValueError when it is neither."""
    text = model.strip()
    if not text:
        raise ValueError("the student model is empty: give a folder or a Hub model id")
    base, revision = split_revision(text)
    if _looks_local(base) or _looks_local(text):
        return _folder(text, Path(base).expanduser(), revision)
    if not is_hub_id(base):
        raise ValueError(f"model {text}: neither a folder nor a Hub model id (org/name[@revision])")
    return ModelSource(base, None, _hub_commit(base, revision))


def _folder(text: str, path: Path, revision: str | None) -> ModelSource:
    """A saved model's folder: it exists, has a ``config.json`` and no revision."""
    if revision and path.is_dir():
        raise ValueError(f"model {text}: a local folder has no revision; drop '@{revision}'")
    if not path.is_dir():
        raise ValueError(f"model {text}: no such folder")
    if not (path / "config.json").is_file():
        raise ValueError(f"model {text}: the folder has no config.json (not a saved model)")
    path = path.resolve()
    return ModelSource(str(path), path, None)


def _looks_local(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or Path(text).expanduser().exists()


def _hub_commit(repo: str, revision: str | None) -> str:
    """The commit ``revision`` of ``repo`` points at: asked of the Hub, else found in the local cache."""
    at = f"@{revision}" if revision else ""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise ValueError(f"model {repo}{at}: a Hub model needs huggingface-hub installed") from None
    try:
        sha = HfApi().model_info(repo, revision=revision).sha
        if sha:
            return sha
        raise ValueError("the Hub gave no commit")
    except Exception as online:
        try:  # offline: the snapshot folder of the cache is named by its commit
            return Path(snapshot_download(repo, revision=revision, local_files_only=True)).name
        except Exception:
            raise ValueError(f"model {repo}{at}: cannot be resolved on the Hub: {_line(online)}") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_chat_template(source: ModelSource, chat_template: str | os.PathLike[str] | None) -> None:
    """The tokenizer loads, and there is a chat template: the tokenizer's own or a readable Jinja file."""
    if chat_template is not None:
        path = Path(chat_template)
        try:
            import jinja2

            jinja2.Environment().parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"chat template {path}: cannot be read: {_line(exc)}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"chat template {path}: line {exc.lineno}: {_line(exc)}") from None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source.model, revision=source.revision)
    except Exception as exc:
        raise ValueError(f"model {source.model}: the tokenizer does not load: {_line(exc)}") from None
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"model {source.model} has no chat template; pass --chat-template FILE (a Jinja chat template)"
        )


def fingerprint(source: ModelSource, chat_template: str | os.PathLike[str] | None) -> str:
    """SHA-256 of what makes the model's answers: see the module docstring."""
    digest = hashlib.sha256()
    if source.folder is None:
        digest.update(f"commit {source.revision}\n".encode())
    else:
        for path in sorted(p for p in source.folder.iterdir() if p.is_file()):
            if path.name.endswith(_WEIGHT_SUFFIXES):
                stat = path.stat()
                digest.update(f"weights {path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
            elif _read_in_full(path.name):
                data = path.read_bytes()
                digest.update(f"file {path.name} {len(data)}\n".encode() + data)
    if chat_template is not None:
        data = Path(chat_template).read_bytes()
        digest.update(f"chat template {len(data)}\n".encode() + data)
    return digest.hexdigest()


def _read_in_full(name: str) -> bool:
    """Configuration, tokenizer, chat template and weight index files: small, and read in full."""
    return name in _CONTENT_FILES or name.startswith(_CONTENT_PREFIXES) or name.endswith(".index.json")


def model_identity(source: ModelSource, chat_template: str | os.PathLike[str] | None) -> str:
    """The student's cache identity: ``hf-student|MODEL@REVISION|FINGERPRINT``, whatever the engine."""
    revision = source.revision or "local"
    return f"{IDENTITY_PREFIX}|{source.model}@{revision}|{fingerprint(source, chat_template)}"


def server_environment() -> dict[str, str]:
    """This process's environment without the real key: a local server has no use for it, and a child
    can leak what it inherits (its log, a crash dump, a library that reads ``OPENAI_API_KEY`` itself)."""
    return {name: value for name, value in os.environ.items() if name != "OPENAI_API_KEY"}


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose_engine() -> str:
    """``vllm`` when vLLM is installed and torch sees a CUDA GPU, else ``transformers``."""
    try:
        has_vllm = _find_spec("vllm") is not None
    except (ImportError, ValueError):
        has_vllm = False
    return "vllm" if has_vllm and _cuda_available() else "transformers"


class LocalStudent(ChildServer):
    """The student's server on a free loopback port, as a context manager; see the module docstring.

    ``engine=None`` chooses with :func:`choose_engine`. ``max_batch``, ``dtype`` and ``threads`` go to the
    transformers server (``dtype`` to vLLM too). ``log_path=None`` logs to a temporary file, removed after a
    clean stop. Start it from a thread that lives as long as the server: the server gets SIGTERM when the
    thread that launched it ends (Linux's parent-death signal follows the thread, not the process).
    """

    stop_timeout = 30.0
    error = StudentServerError
    log_prefix = "skillmix-student-"

    def __init__(
        self,
        model: str,
        chat_template: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
        max_batch: int = 16,
        dtype: str = "auto",
        threads: int | None = None,
        startup_timeout: float = 900.0,
        host: str = "127.0.0.1",
    ) -> None:
        if engine not in (None, *ENGINES):
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.model = model
        self.chat_template = Path(chat_template).resolve() if chat_template is not None else None
        self.log_path = Path(log_path) if log_path is not None else None
        self.max_batch, self.dtype, self.threads = max_batch, dtype, threads
        self.startup_timeout, self.host = startup_timeout, host
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._engine = engine
        self._source: ModelSource | None = None
        self._identity: str | None = None
        self._temporary_log = False
        self._ready = False

    def check(self) -> LocalStudent:
        """Everything that can fail before the server starts (one-line ValueErrors); done once."""
        if self._source is None:
            source = resolve_model(self.model)
            check_chat_template(source, self.chat_template)
            self._identity = model_identity(source, self.chat_template)
            self._engine = self._engine or choose_engine()
            self._source = source
        return self

    @property
    def source(self) -> ModelSource:
        self.check()
        assert self._source is not None
        return self._source

    @property
    def model_name(self) -> str:
        return self.source.name

    @property
    def identity(self) -> str:
        self.check()
        assert self._identity is not None
        return self._identity

    @property
    def engine(self) -> str:
        self.check()
        assert self._engine is not None
        return self._engine

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise StudentServerError("the student's server has not been started")
        return f"http://{self.host}:{self.port}/v1"

    def endpoint(self) -> Any:
        """The :class:`skillmix.llm.client.Endpoint` of the running student."""
        from skillmix.llm.client import Endpoint

        return Endpoint(model=self.model_name, base_url=self.base_url, api_key_env=API_KEY_ENV,
                        identity=self.identity)  # fmt: skip

    def argv(self) -> list[str]:
        """The server's command line (after :meth:`check`, with the port chosen)."""
        source, port = self.source, str(self.port)
        if self.engine == "vllm":
            here = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
            argv = [shutil.which("vllm", path=here) or "vllm", "serve", source.model,
                    "--host", self.host, "--port", port,
                    "--served-model-name", self.model_name, "--dtype", self.dtype]  # fmt: skip
        else:
            argv = [sys.executable, "-m", "skillmix.llm.hf_server", "--model", source.model,
                    "--served-model-name", self.model_name, "--host", self.host, "--port", port,
                    "--max-batch", str(self.max_batch), "--dtype", self.dtype]  # fmt: skip
            argv += ["--threads", str(self.threads)] if self.threads else []
        argv += ["--revision", source.revision] if source.revision else []
        argv += ["--chat-template", str(self.chat_template)] if self.chat_template else []
        return argv

    def start(self) -> LocalStudent:
        """Check, launch the server and wait until ``GET /v1/models`` lists the model; returns ``self``."""
        self.launch()
        if not self._ready:
            self.wait_ready()
        return self

    def launch(self) -> LocalStudent:
        """Check and launch the server without waiting for it (then :meth:`wait_ready`): several students,
        or a student and other work, can start at once. Launch from a thread that outlives the server:
        the server gets SIGTERM when the thread that started it ends (Linux's parent-death signal)."""
        if self.process is not None:
            return self
        self.check()
        self.port = free_port(self.host)
        env = {**server_environment(), "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        self._spawn(self.argv(), self._what(), env)
        return self

    def wait_ready(self) -> None:
        """Wait until the launched server lists the model; stops it and raises StudentServerError if it
        dies first or is not ready within ``startup_timeout``."""
        if self.process is None:
            raise StudentServerError("the student's server has not been launched")
        self._wait_serving(self.base_url, self.model_name, self.startup_timeout, self._what())

    def _what(self) -> str:
        return f"the student's {self.engine} server for {self.model}"
