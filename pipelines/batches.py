"""Batch mode: a role's requests go through its server's batch API (``--teacher-batch``, ``--judge-batch``,
``--student-batch``), at the provider's batch price, in jobs that survive anything.

**How a batched run goes.** The pipeline runs as it always does, but a batched role's client sends
nothing: a request it cannot answer from the cache records its line in the run's cache
(``batch_lines``, state ``wanted``) and answers ``deferred``, so a row stops at its first missing answer.
The :class:`Batcher` then sends every wanted line in batch files within the provider's limits, waits for
them, and stores each answer in the cache as a direct answer would be stored; the pipeline runs again, and
its rows go one stage further (round 1, round 2, grading), until no line is wanted. The last pass answers
everything from the cache: the rows, statuses, manifest and output are those a direct run makes.

**What survives what.** Before a batch is created, its lines are recorded with the id of their uploaded
input file, and the batch's metadata carries that file id and the folder's run tag (``batch_tag`` in the
work folder); once created, the batch's id is recorded. A run that starts with batches of its folder still
in flight (recorded in the cache, or found by listing the provider's batches with the run tag, so a kill
between the create call and the local record loses nothing) waits for them instead of sending their lines
again. Each line's worst case is reserved at the batch price before it is sent (reservation
``batch:<key>``), and settled when its answer is stored; a killed run's reservations stay held, and the
next run settles them, so the hard cap holds across crashes. Ctrl-C or SIGTERM stops the waiting and
leaves the batches running (they are paid work): the same command again collects them.

**Failures.** A line the provider failed (its error file) is sent again in the next batch, up to the
client's ``max_retries``, then ends ``api_error``; an invalid request (HTTP 400, 413, 422) is final, as it
is direct; the lines an expired or cancelled batch did not run are sent again. A line the cap cannot cover
is not sent and ends ``budget``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillmix.dataset_folder.layout import CACHE_FILE
from skillmix.llm.batch import TERMINAL, BatchAPIClient, chunks, request_line
from skillmix.llm.cache import RequestCache
from skillmix.llm.client import completion_from
from skillmix.llm.prices import PriceTable
from skillmix.statuses import FINAL, INVALID_REQUEST_HTTP

TAG_FILE = "batch_tag"
POLL_SECONDS = 5.0  # between looks at the open batches (SKILLMIX_BATCH_POLL_SECONDS changes it)


def client_for(endpoint: dict[str, Any], clients: dict[tuple[Any, ...], BatchAPIClient]) -> BatchAPIClient:
    """The batch client of an ``endpoint`` (one per server and key, kept in ``clients``)."""
    key = (endpoint.get("base_url"), endpoint.get("api_key_env") or "OPENAI_API_KEY")
    if key not in clients:
        clients[key] = BatchAPIClient(key[0], os.environ.get(key[1]))
    return clients[key]


def run_tag(work: Path) -> str:
    """The folder's run tag (made once): how its batches are found again at the provider."""
    path = work / TAG_FILE
    if not path.is_file():
        work.mkdir(parents=True, exist_ok=True)
        path.write_text(f"skillmix-{uuid.uuid4().hex[:16]}\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


class Batcher:
    """Sends the wanted lines of one folder's cache as batches and stores their answers (module doc)."""

    def __init__(
        self,
        work: Path,
        prices: PriceTable,
        max_usd: float | None,
        max_retries: int,
        log: Callable[[str], None] = print,
        poll: float | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.work, self.prices, self.cap, self.max_retries, self.log = work, prices, max_usd, max_retries, log
        self.poll = (
            poll if poll is not None else float(os.environ.get("SKILLMIX_BATCH_POLL_SECONDS") or POLL_SECONDS)
        )
        self.stop = stop
        self.cache = RequestCache(work / CACHE_FILE)
        self.tag = run_tag(work)
        self.stats = {"batches": 0, "lines": 0, "failed": 0, "retried": 0, "refused": 0, "saved_usd": 0.0}
        self._clients: dict[tuple[Any, ...], BatchAPIClient] = {}

    def client(self, endpoint: dict[str, Any]) -> BatchAPIClient:
        return client_for(endpoint, self._clients)

    # ------------------------------------------------------------------ one round of batches

    def wanted(self) -> list[dict[str, Any]]:
        return self.cache.batch_lines("state = 'wanted'")

    def reattach(self, endpoints: list[dict[str, Any]]) -> None:
        """Adopt the batches a killed run left: those the cache knows, and those only the provider knows
        (created, then killed before the id was recorded: found by the run tag and their input file)."""
        known = {b["id"] for b in self.cache.batch_records()}
        for endpoint in endpoints:
            for batch in self.client(endpoint).of_run(self.tag):
                if batch["id"] in known:
                    continue
                file_id = (batch.get("metadata") or {}).get("skillmix_input_file") or batch.get(
                    "input_file_id"
                )
                lines = [line["key"] for line in self.cache.batch_lines("input_file = ?", (file_id,))]
                if lines:
                    self.cache.record_batch(batch["id"], file_id, endpoint, "adopted", len(lines))
                    self.cache.set_lines(lines, "submitted", batch_id=batch["id"])
                    self.log(f"adopted batch {batch['id']} ({len(lines)} requests) left by an earlier run")
        for record in self.cache.batch_records():  # recorded, killed before its lines were marked
            where = "state = 'uploading' AND input_file = ?"
            stranded = self.cache.batch_lines(where, (record["input_file"],))
            if stranded:
                self.cache.set_lines([line["key"] for line in stranded], "submitted", batch_id=record["id"])
        uploaded = self.cache.batch_lines("state = 'uploading'")  # uploaded, never created: send again
        if uploaded:
            self.cache.set_lines([line["key"] for line in uploaded], "wanted")

    def submit(self, stage: str) -> int:
        """Send every wanted line (one or more batch files per endpoint); returns how many were sent."""
        lines = self.wanted()
        by_endpoint: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            by_endpoint.setdefault(repr(sorted(line["endpoint"].items())), []).append(line)
        sent = 0
        for group in by_endpoint.values():
            endpoint = group[0]["endpoint"]
            affordable = [line for line in group if self._reserve(line)]
            refused = [line["key"] for line in group if line not in affordable]
            if refused:
                cap = f"${self.cap:.2f}" if self.cap is not None else "the cap"
                self.cache.set_lines(
                    refused, "refused", error=f"spending limit of {cap}: not sent in a batch"
                )
                self.stats["refused"] += len(refused)
            encoded = [(line["key"], request_line(line["key"], line["body"])) for line in affordable]
            for part in chunks(encoded):
                keys = [key for key, _ in part]
                client = self.client(endpoint)
                file_id = client.upload(part, f"{self.tag}-{stage}.jsonl")
                self.cache.set_lines(keys, "uploading", input_file=file_id)
                batch = client.create(file_id, self.tag, stage)
                self.cache.record_batch(batch["id"], file_id, endpoint, stage, len(keys))
                self.cache.set_lines(keys, "submitted", batch_id=batch["id"])
                self.stats["batches"] += 1
                sent += len(keys)
        self.stats["lines"] += sent
        return sent

    def _reserve(self, line: dict[str, Any]) -> bool:
        if self.cap is None:
            return True
        return self.cache.reserve(f"batch:{line['key']}", float(line["worst_usd"]), self.cap)

    def wait(self) -> None:
        """Poll every open batch until it ends, storing each one's answers as it does; one bar per stage
        (its requests done) with the batches validating, in progress and failed and the time waited."""
        from tqdm import tqdm

        started = time.monotonic()
        bars: dict[str, Any] = {}
        try:
            while True:
                open_batches = self.cache.batch_records(open_only=True)
                if not open_batches:
                    return
                counts: dict[str, dict[str, int]] = {}
                for record in open_batches:
                    batch = self.client(record["endpoint"]).retrieve(record["id"])
                    stage = counts.setdefault(
                        record["stage"],
                        dict.fromkeys(("total", "done", "failed", "validating", "in_progress"), 0),
                    )
                    n = batch.get("request_counts") or {}
                    stage["total"] += int(n.get("total") or record["lines"])
                    stage["done"] += int(n.get("completed") or 0) + int(n.get("failed") or 0)
                    stage["failed"] += int(n.get("failed") or 0)
                    if batch["status"] in stage:
                        stage[batch["status"]] += 1
                    if batch["status"] in TERMINAL:
                        self._collect(record, batch)
                waited = time.monotonic() - started
                for name, c in counts.items():
                    bar = bars.get(name) or bars.setdefault(
                        name,
                        tqdm(
                            total=c["total"],
                            desc=f"batch {name:<6}",
                            unit="req",
                            file=sys.stderr,
                            disable=None,
                        ),
                    )
                    bar.total, bar.n = c["total"], c["done"]
                    bar.set_postfix(
                        validating=c["validating"],
                        in_progress=c["in_progress"],
                        failed=c["failed"],
                        waited=f"{waited:.0f}s",
                        refresh=True,
                    )
                if not self.cache.batch_records(open_only=True):
                    return
                if self.stop():
                    raise KeyboardInterrupt
                time.sleep(self.poll)
        finally:
            for bar in bars.values():
                bar.close()

    def _collect(self, record: dict[str, Any], batch: dict[str, Any]) -> None:
        """Store a finished batch's answers; its failed and unrun lines go back to ``wanted``."""
        results = self.client(record["endpoint"]).results(batch) if batch["status"] != "failed" else {}
        model = record["endpoint"]["model"]
        lines = self.cache.batch_lines("batch_id = ?", (record["id"],))
        unrun = []
        for line in lines:
            result = results.get(line["key"])
            reservation = f"batch:{line['key']}"
            if result is not None and result.status == 200 and result.body is not None:
                completion = completion_from(result.body)
                completion.model = model
                usd = self.prices.cost(model, completion.input_tokens, completion.output_tokens, batch=True)
                direct = self.prices.cost(model, completion.input_tokens, completion.output_tokens)
                completion.cost_usd = completion.paid_usd = usd
                spend = (line["key"], model, completion.input_tokens, completion.output_tokens, usd)
                self.cache.settle(reservation, float(line["worst_usd"]), spend)
                self.stats["saved_usd"] += direct - usd
                if completion.status in FINAL:
                    self.cache.put(line["key"], line["body"], completion.to_dict())
                    self.cache.set_lines([line["key"]], "answered")
                    continue
                error = completion.error
            elif result is not None and result.status in INVALID_REQUEST_HTTP:
                self.cache.release(reservation)
                message = _message(result.body) or f"HTTP {result.status}"
                answer = {
                    "text": None,
                    "status": "invalid_request",
                    "error": message,
                    "input_tokens": 0,
                    "output_tokens": 0,
                }
                self.cache.put(line["key"], line["body"], answer)
                self.cache.set_lines([line["key"]], "answered")
                continue
            else:
                self.cache.release(reservation)
                not_run = result is None or result.status is None
                error = (
                    "not run by its batch" if not_run else (_message(result.body) or f"HTTP {result.status}")
                )
                if not_run:  # expired or cancelled: sent again, not a failure of the request
                    unrun.append(line["key"])
                    continue
            if int(line["attempts"]) < self.max_retries:
                self.cache.set_lines([line["key"]], "wanted", attempts=int(line["attempts"]) + 1, error=error)
                self.stats["retried"] += 1
            else:
                self.cache.set_lines(
                    [line["key"]], "failed", error=f"{error} (after {line['attempts'] + 1} batches)"
                )
                self.stats["failed"] += 1
        if unrun:
            self.cache.set_lines(unrun, "wanted")
        self.cache.set_batch(record["id"], batch["status"])

    def close(self) -> None:
        self.cache.close()


def _message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("message")
        return body.get("message")
    return None


# ---------------------------------------------------------------------- skillmix batches status / cancel


def folder_batches(out: str | Path) -> tuple[RequestCache, list[dict[str, Any]]]:
    """The cache of the folder ``out`` and the batches it recorded (ConfigError when it has none)."""
    from skillmix.config import ConfigError
    from skillmix.dataset_folder.layout import WORK_DIR

    path = Path(out) / WORK_DIR / CACHE_FILE
    if not path.is_file():
        raise ConfigError(f"{out} holds no run (no {WORK_DIR}/{CACHE_FILE})")
    cache = RequestCache(path)
    return cache, cache.batch_records()


def status_lines(out: str | Path) -> list[str]:
    """``skillmix batches status OUT``: each batch of the folder as its provider reports it now."""
    cache, records = folder_batches(out)
    try:
        if not records:
            return [f"{out}: no batch was sent from this folder"]
        lines = [f"{out}: {len(records)} batches (run tag {run_tag(Path(out) / '.skillmix')})"]
        clients: dict[tuple[Any, ...], BatchAPIClient] = {}
        for record in records:
            batch = client_for(record["endpoint"], clients).retrieve(record["id"])
            n = batch.get("request_counts") or {}
            done = f"{n.get('completed', 0)}/{n.get('total', 0)} done, {n.get('failed', 0)} failed"
            lines.append(f"  {record['id']}  {record['stage']:<7} {batch['status']:<11} {done}")
        return lines
    finally:
        cache.close()


def cancel_lines(out: str | Path) -> list[str]:
    """``skillmix batches cancel OUT``: cancel every batch of the folder still running."""
    cache, records = folder_batches(out)
    try:
        lines: list[str] = []
        clients: dict[tuple[Any, ...], BatchAPIClient] = {}
        for record in records:
            client = client_for(record["endpoint"], clients)
            batch = client.retrieve(record["id"])
            if batch["status"] in TERMINAL:
                continue
            lines.append(f"  {record['id']}: {client.cancel(record['id'])['status']}")
        return lines or [f"{out}: no batch is running"]
    finally:
        cache.close()
