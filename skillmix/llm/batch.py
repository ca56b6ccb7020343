"""A provider's batch API (OpenAI's ``/v1/files`` + ``/v1/batches``; which providers serve it is on the
Batch mode page of the docs): upload a JSONL of requests, create a batch, look at it, list, cancel, read its
results.

Thin on purpose: the openai SDK makes the calls; what this adds is the request file's format, the batch's
``metadata`` (the run tag and the input file id, written into the batch when it is created, so that a run
killed between the create call and its own record finds its batches again by listing them), the limits of
one file (requests and bytes), the probe that tells a server without a batch API (404, 501) from one that
lists no batches (405), statuses compared case-insensitively, and the results as ``{custom_id:
LineResult}`` read line by line on ``"\n"`` (JSON text may hold U+2028; a line that cannot be read is
counted and left out: its request is taken as not run) with the error file's lines (an expired line has
status ``None`` and the code ``batch_expired``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from skillmix.config import ConfigError

CHAT_URL = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
MAX_REQUESTS = 50_000  # OpenAI's limits of one batch file
MAX_BYTES = 200 * 1024 * 1024
RUN_TAG = "skillmix_run"
INPUT_FILE = "skillmix_input_file"
TERMINAL = ("completed", "failed", "expired", "cancelled")
NO_BATCH_API = (404, 501)  # the probe's answers that mean "no batch API"; 405: no listing
# ``BatchError`` codes that are the account's, not the requests': the run stops with the provider's message
ACCOUNT_CODES = frozenset({"token_limit_exceeded", "insufficient_quota", "billing_hard_limit_reached"})


class BatchUnsupported(ConfigError):
    """The server serves no batch API (refused before the run: bad input, exit code 2)."""


class BatchLost(LookupError):
    """The provider no longer knows a batch (404 on retrieving its id)."""


class BatchRefused(RuntimeError):
    """The provider refused a batch for the account (an enqueued-token limit, a quota): the run stops with
    the provider's message and what to do (a run that could not finish: exit code 1)."""


@dataclass
class LineResult:
    custom_id: str
    status: int | None  # HTTP status of the line's response; None: not run (expired, cancelled)
    body: dict[str, Any] | None
    code: str | None = None  # the error code of a line not run (batch_expired, ...)
    message: str | None = None  # the line's error message (its ``error``'s; none given: its body's)

    def __post_init__(self) -> None:
        if self.message is None:
            self.message = error_message(self.body)


def request_line(custom_id: str, body: dict[str, Any], url: str = CHAT_URL) -> bytes:
    return (
        json.dumps(
            {"custom_id": custom_id, "method": "POST", "url": url, "body": body},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        + "\n"
    ).encode("utf-8")


def chunks(
    lines: Iterable[tuple[str, bytes]], max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> Iterator[list[tuple[str, bytes]]]:
    """The lines ``(custom_id, encoded line)`` in files within the limits, in order."""
    current: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, line in lines:
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            yield current
            current, size = [], 0
        current.append((custom_id, line))
        size += len(line)
    if current:
        yield current


class BatchAPIClient:
    """The batch API of one server (``base_url``; None: api.openai.com) with the key of ``api_key_env``."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float = 120.0) -> None:
        import openai

        self.client = openai.OpenAI(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=3, timeout=timeout
        )

    def check(self) -> bool:
        """Refuse a server without a batch API (one line), before anything is sent: ``batches.list(limit=1)``
        answered 404 or 501. Returns whether the server lists batches (405: it creates them but lists none,
        so a run re-attaches by its recorded ids only)."""
        import openai

        try:
            self.client.with_options(max_retries=0).batches.list(limit=1)
        except openai.APIStatusError as exc:
            if exc.status_code in NO_BATCH_API:
                raise BatchUnsupported(
                    f"{self.client.base_url} serves no batch API (/v1/batches answered {exc.status_code})"
                ) from None
            if exc.status_code == 405:
                return False
            raise
        return True

    def upload(self, lines: list[tuple[str, bytes]], name: str) -> str:
        data = b"".join(line for _, line in lines)
        return self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch").id

    def create(self, input_file: str, run_tag: str, stage: str) -> dict[str, Any]:
        batch = self.client.batches.create(
            input_file_id=input_file,
            endpoint=CHAT_URL,
            completion_window=COMPLETION_WINDOW,
            metadata={RUN_TAG: run_tag, INPUT_FILE: input_file, "stage": stage},
        )
        return batch.model_dump()

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """The batch (its ``status`` lower-cased); :class:`BatchLost` when the provider does not know it."""
        import openai

        try:
            return _normal(self.client.batches.retrieve(batch_id).model_dump())
        except openai.NotFoundError:
            raise BatchLost(batch_id) from None

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return _normal(self.client.batches.cancel(batch_id).model_dump())

    def of_run(self, run_tag: str, input_files: set[str], since: float) -> list[dict[str, Any]] | None:
        """The batches of the server that are a run's: metadata naming ``run_tag``, or (a provider that
        keeps no metadata) an input file of ``input_files``; listed newest first with the SDK's
        auto-paging, stopping at the first batch created before ``since``. None: the server lists no
        batches (405)."""
        import openai

        found = []
        try:
            for batch in self.client.batches.list(limit=100):
                if batch.created_at < since:
                    break
                if (batch.metadata or {}).get(RUN_TAG) == run_tag or batch.input_file_id in input_files:
                    found.append(_normal(batch.model_dump()))
        except openai.APIStatusError as exc:
            if exc.status_code == 405:
                return None
            raise
        return found

    def input_ids(self, file_id: str) -> list[str]:
        """The ``custom_id`` of each line of an uploaded input file, in order (line 1 first)."""
        ids = []
        for raw in self.client.files.content(file_id).content.split(b"\n"):
            if raw.strip():
                try:
                    ids.append(str(json.loads(raw.decode("utf-8")).get("custom_id")))
                except (UnicodeDecodeError, ValueError, AttributeError):
                    ids.append("")
        return ids

    def results(self, batch: dict[str, Any]) -> dict[str, LineResult]:
        """The answered and failed lines of a batch (its output and error files)."""
        return self.read(batch)[0]

    def read(self, batch: dict[str, Any]) -> tuple[dict[str, LineResult], int]:
        """The answered and failed lines of a batch and how many lines (or whole files: 404) could not be
        read."""
        import openai

        out: dict[str, LineResult] = {}
        bad = 0
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if not file_id:
                continue
            try:
                content = self.client.files.content(file_id).content
            except openai.NotFoundError:  # the provider deleted it (batch files expire): its lines not run
                bad += 1
                continue
            for raw in content.split(b"\n"):
                if not raw.strip():
                    continue
                result = parse_output_line(raw)
                if isinstance(result, str):
                    bad += 1
                else:
                    out[result.custom_id] = result
        return out, bad


def _normal(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch with its status lower-cased (Together, for one, reports ``COMPLETED``)."""
    batch["status"] = str(batch.get("status") or "").lower()
    return batch


def parse_output_line(raw: bytes) -> LineResult | str:
    """One line of an output or error file (OpenAI's; ``vllm run-batch``'s, which writes both kinds into
    one file), or the reason it cannot be read: not JSON (cut short?), no ``custom_id``, neither a
    ``response`` nor an ``error``. A line with no response was not run: its status is None, its body the
    error (a bare string as ``{"message": ...}``), its code the error's (``batch_expired``, ...)."""
    try:
        line = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not a JSON line (cut short?)"
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return "no custom_id"
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict) and response:  # vllm run-batch may give an error beside a response
        status, body = response.get("status_code"), response.get("body")
        message = error_message(error) or error_message(body)
        return LineResult(line["custom_id"], status if isinstance(status, int) else None, body, None, message)
    if error is None:
        return "neither a response nor an error"
    body = error if isinstance(error, dict) else {"message": str(error)}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    return LineResult(line["custom_id"], None, body, code, error_message(body))


def error_message(error: Any) -> str | None:
    """The message of an error (a string, ``{"message"}``, or ``{"error": {"message"}}``)."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return str(inner.get("message")) if inner.get("message") else None
    return None
