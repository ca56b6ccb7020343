"""An OpenAI-compatible server over a local ``transformers`` causal LM, for when vLLM (or a GPU) is not
there: :class:`skillmix.llm.local.LocalStudent` runs it as a child process, so that a checkpoint on this
machine (the student of ``skillmix eval``) is reached through the project's one HTTP client::

    python -m skillmix.llm.hf_server --model PATH_OR_ID [--revision REV] [--chat-template FILE]
        [--served-model-name NAME] [--host 127.0.0.1] [--port 8000] [--max-batch 16] [--dtype auto]
        [--threads N]

Routes: ``GET /v1/models`` (once the model is loaded), ``POST /v1/chat/completions`` (``messages``,
``max_tokens``, ``temperature``, ``seed``; ``n`` must be 1, no streaming), ``GET /stats`` (the batches so
far and their sizes), ``GET /health``. A bad request gets a 400 with an OpenAI-shaped error body (the
formats: :mod:`skillmix.llm.hf_wire`).

The prompt is the model's chat template (or ``--chat-template``) with ``add_generation_prompt=True``,
tokenized without adding special tokens (the template writes them), as vLLM does. One worker thread owns
the model: requests that arrive together (up to ``--max-batch``, waiting a few milliseconds for more) are
grouped by temperature and each group is ONE ``model.generate`` call with left padding; greedy at
temperature 0, sampling otherwise (the other sampling settings, such as ``top_p``, are the model's
``generation_config``, as vLLM uses them). A generation stops at the model's end-of-sequence tokens
(``finish_reason`` "stop") or at the request's ``max_tokens`` ("length").

Seeds: one batch shares one random generator, so a request's ``seed`` cannot be honoured on its own. The
generator of a sampled batch is seeded from the list of its requests' seeds (a SHA-256 of them, in order),
so the same requests batched the same way give the same texts, and a request alone with a seed always gives
the same text; a batch without any seed is not re-seeded. The client's request cache makes re-runs free
anyway. bf16 on a CUDA GPU with ``--dtype auto``, float32 on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import queue
import socketserver
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmix.llm.hf_wire import MAX_BODY_BYTES, ApiError, completion_body, model_list, parse_request

BATCH_WAIT_S = 0.005  # how long a batch waits for more requests once its first one is there


@dataclass
class Pending:
    """One request on its way through the worker: its prompt tokens, settings and, once done, its result."""

    ids: list[int]
    max_tokens: int
    temperature: float
    seed: int | None
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[str, str, int] | None = None  # text, finish reason, completion tokens
    error: str | None = None


def batch_seed(seeds: list[int | None]) -> int | None:
    """The seed of a sampled batch's generator, from its requests' seeds in order; None when none has one."""
    if all(seed is None for seed in seeds):
        return None
    digest = hashlib.sha256(json.dumps(seeds).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Student:
    """The tokenizer and the model. Prompts are tokenized by the request threads (under a lock); only the
    worker thread calls :meth:`generate`."""

    def __init__(self, name: str, tokenizer: Any, model: Any, device: str) -> None:
        self.name, self.tokenizer, self.model, self.device = name, tokenizer, model, device
        self._lock = threading.Lock()
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        self.stop_ids = {t for t in [*eos, tokenizer.eos_token_id] if t is not None}
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.stop_ids, default=0)
        self.context = getattr(model.config, "max_position_embeddings", None)

    def prompt_ids(self, messages: list[dict[str, str]], max_tokens: int) -> list[int]:
        try:
            with self._lock:
                text = self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
                ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        except Exception as exc:  # the template refused the conversation (roles, order...)
            raise ApiError(f"the chat template refused the messages: {exc}", param="messages") from None
        if self.context and len(ids) + max_tokens > self.context:
            raise ApiError(
                f"this model's maximum context length is {self.context} tokens; the prompt has {len(ids)} "
                f"and max_tokens is {max_tokens}",
                param="max_tokens",
            )
        return ids

    def generate(self, group: list[Pending]) -> list[tuple[str, str, int]]:
        """One ``model.generate`` call for ``group`` (one temperature), left-padded."""
        import torch

        width = max(len(p.ids) for p in group)
        ids = [[self.pad_id] * (width - len(p.ids)) + p.ids for p in group]
        mask = [[0] * (width - len(p.ids)) + [1] * len(p.ids) for p in group]
        most, stop = max(p.max_tokens for p in group), sorted(self.stop_ids)
        options: dict[str, Any] = {"max_new_tokens": most, "pad_token_id": self.pad_id, "eos_token_id": stop}
        temperature = group[0].temperature
        if temperature > 0:  # top_k: the model's or none (transformers would add 50, vLLM does not)
            top_k = self.model.generation_config.top_k or 0
            options.update(do_sample=True, temperature=temperature, top_k=top_k)
            seed = batch_seed([p.seed for p in group])
            if seed is not None:
                torch.manual_seed(seed)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=torch.tensor(ids, device=self.device),
                attention_mask=torch.tensor(mask, device=self.device),
                **options,
            )
        return [self._finish(p, row) for p, row in zip(group, out[:, width:].tolist(), strict=True)]

    def _finish(self, pending: Pending, row: list[int]) -> tuple[str, str, int]:
        row = row[: pending.max_tokens]
        end = next((i for i, token in enumerate(row) if token in self.stop_ids), None)
        tokens = row if end is None else row[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return text, "length" if end is None else "stop", len(row) if end is None else end + 1


class Batcher:
    """The worker thread: gathers the queued requests into batches and runs them, one group at a time."""

    def __init__(self, student: Student, max_batch: int, wait_s: float = BATCH_WAIT_S) -> None:
        self.student, self.max_batch, self.wait_s = student, max_batch, wait_s
        self.queue: queue.Queue[Pending] = queue.Queue()
        self.sizes: dict[int, int] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="generate", daemon=True).start()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            sizes = dict(sorted(self.sizes.items()))
        requests = sum(size * count for size, count in sizes.items())
        return {"batches": sum(sizes.values()), "requests": requests, "largest_batch": max(sizes, default=0),
                "batch_sizes": {str(size): count for size, count in sizes.items()}}  # fmt: skip

    def _gather(self) -> list[Pending]:
        batch = [self.queue.get()]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            groups: dict[float, list[Pending]] = {}
            for pending in self._gather():
                groups.setdefault(pending.temperature, []).append(pending)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[Pending]) -> None:
        try:
            results = self.student.generate(group)
            for pending, result in zip(group, results, strict=True):
                pending.result = result
        except Exception as exc:  # a failed generation fails its requests, not the server
            traceback.print_exc()
            for pending in group:
                pending.error = f"generation failed: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self.sizes[len(group)] = self.sizes.get(len(group), 0) + 1
            for pending in group:
                pending.done.set()


class App:
    """What the routes do, given the loaded student and its batcher."""

    def __init__(self, student: Student, batcher: Batcher) -> None:
        self.student, self.batcher = student, batcher
        self.created = int(time.time())

    def models(self) -> dict[str, Any]:
        return model_list(self.student.name, self.created)

    def complete(self, raw: bytes) -> dict[str, Any]:
        request = parse_request(raw)
        if request["model"] not in (None, self.student.name):
            raise ApiError(f"the model `{request['model']}` does not exist", status=404, param="model")
        ids = self.student.prompt_ids(request["messages"], request["max_tokens"])
        pending = Pending(ids, request["max_tokens"], request["temperature"], request["seed"])
        self.batcher.queue.put(pending)
        pending.done.wait()
        if pending.result is None:
            raise ApiError(pending.error or "generation failed", status=500)
        text, finish, completion_tokens = pending.result
        return completion_body(self.student.name, text, finish, len(ids), completion_tokens)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # an evaluation opens many connections at once
    app: App

    def server_bind(self) -> None:  # HTTPServer's getfqdn lookup can stall without a resolver
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away is no error
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0].rstrip("/")
        app = self.server.app
        answers = {"/v1/models": app.models, "/stats": app.batcher.stats, "/health": lambda: {"status": "ok"}}
        if route in answers:
            self._send(200, answers[route]())
        else:
            self._send(404, ApiError(f"no route GET {route}", status=404).body())

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
            route = self.path.split("?", 1)[0].rstrip("/")
            if route != "/v1/chat/completions":
                raise ApiError(f"no route POST {route}", status=404)
            self._send(200, self.server.app.complete(raw))
        except ApiError as exc:
            self._send(exc.status, exc.body())
        except Exception as exc:  # a bug: a 500 for this request, the server goes on
            traceback.print_exc()
            self._send(500, ApiError(f"internal error: {type(exc).__name__}: {exc}", status=500).body())

    def _read_body(self) -> bytes:
        length = (self.headers.get("Content-Length") or "0").strip()
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError("a request needs a Content-Length of at most 32 MiB")
        return self.rfile.read(int(length))

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def load(args: argparse.Namespace) -> Student:
    """The tokenizer (with its chat template) and the model, on the GPU when there is one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    tokenizer = AutoTokenizer.from_pretrained(args.model, revision=args.revision)
    if args.chat_template:
        tokenizer.chat_template = Path(args.chat_template).read_text(encoding="utf-8")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{args.model} has no chat template; pass --chat-template FILE")
    model = AutoModelForCausalLM.from_pretrained(
        args.model, revision=args.revision, dtype=getattr(torch, dtype)
    )
    model.to(device).eval()
    print(f"loaded {args.model} on {device} in {dtype}", flush=True)
    return Student(args.served_model_name or args.model, tokenizer, model, device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skillmix.llm.hf_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # fmt: skip
    parser.add_argument("--model", required=True, help="a local folder or a Hub model id")
    parser.add_argument("--revision", help="the Hub revision (tag, branch or commit)")
    parser.add_argument("--chat-template", help="a Jinja chat template file, instead of the tokenizer's")
    parser.add_argument("--served-model-name", help="the name in /v1/models and requests (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=16, help="requests per generate call at most")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        student = load(args)
        server = _Server((args.host, args.port), _Handler)  # listens once the model is loaded
    except Exception as exc:  # the traceback, then one line: the end of the log says what went wrong
        traceback.print_exc()
        print(f"hf_server: error: {args.model}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    batcher = Batcher(student, max(1, args.max_batch))
    batcher.start()
    server.app = App(student, batcher)
    print(f"serving {student.name} on http://{args.host}:{args.port}/v1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
