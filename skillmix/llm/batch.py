"""A provider's batch API (OpenAI's ``/v1/files`` + ``/v1/batches``, which other OpenAI-compatible
providers serve too): upload a JSONL of requests, create a batch, look at it, list, cancel, read its results.

Thin on purpose: the openai SDK makes the calls; what this adds is the request file's format, the batch's
``metadata`` (the run tag and the input file id, written into the batch when it is created, so that a run
killed between the create call and its own record finds its batches again by listing them), the limits of
one file (requests and bytes), and the results as ``{custom_id: (HTTP status, response body)}`` with the
error file's lines (an expired line has status ``None`` and the code ``batch_expired``).
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


class BatchUnsupported(ConfigError):
    """The server serves no batch API (refused before the run: bad input, exit code 2)."""


@dataclass
class LineResult:
    custom_id: str
    status: int | None  # HTTP status of the line's response; None: not run (expired, cancelled)
    body: dict[str, Any] | None
    code: str | None = None  # the error code of a line not run (batch_expired, ...)


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

    def check(self) -> None:
        """Refuse a server without a batch API (one line), before anything is sent."""
        import openai

        try:
            self.client.batches.list(limit=1)
        except openai.NotFoundError:
            raise BatchUnsupported(f"{self.client.base_url} serves no batch API (/v1/batches)") from None

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
        return self.client.batches.retrieve(batch_id).model_dump()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self.client.batches.cancel(batch_id).model_dump()

    def of_run(self, run_tag: str) -> list[dict[str, Any]]:
        """Every batch of the server whose metadata names ``run_tag`` (paging through the list)."""
        found, after = [], None
        while True:
            page = self.client.batches.list(limit=100, **({"after": after} if after else {}))
            for batch in page.data:
                if (batch.metadata or {}).get(RUN_TAG) == run_tag:
                    found.append(batch.model_dump())
            if not page.has_more or not page.data:
                return found
            after = page.data[-1].id

    def results(self, batch: dict[str, Any]) -> dict[str, LineResult]:
        """The answered and failed lines of a batch (its output and error files)."""
        out: dict[str, LineResult] = {}
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if not file_id:
                continue
            text = self.client.files.content(file_id).text
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                response, error = line.get("response"), line.get("error")
                if response:
                    out[line["custom_id"]] = LineResult(
                        line["custom_id"], response.get("status_code"), response.get("body")
                    )
                else:
                    code = (error or {}).get("code")
                    out[line["custom_id"]] = LineResult(line["custom_id"], None, error, code)
        return out
