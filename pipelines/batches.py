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
in flight (recorded in the cache, or found by listing the provider's batches by the run tag or the input
file, so a kill between the create call and the local record loses nothing where the provider lists
batches) waits for them instead of sending their lines again. Under a cap, a row's first line reserves
the row's worst case at the batch price (``batchrow:<row>``) before its batch is sent; each answer draws
its line's worst case from it; a killed run's reservations stay held, and the next run settles them, so
the hard cap holds across crashes. Ctrl-C or SIGTERM stops the waiting and leaves the batches running (they
are paid work): the same command again collects them.

**Failures** (:mod:`skillmix.pipelines.batch_collect`): a batch is collected once, in one transaction; a
failed batch shows its errors; retryable line failures are sent again up to ``max_retries``, then end
``api_error``; an invalid request (HTTP 400, 413, 422) is final, as it is direct; lines not run (expired,
cancelled, unreadable, lost) are sent again and count as attempts. A line whose row the cap cannot cover is
not sent and ends ``budget``; the next run sends again what earlier runs refused or gave up.
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
from skillmix.llm.batch import INPUT_FILE, TERMINAL, BatchAPIClient, BatchLost, chunks, request_line
from skillmix.llm.cache import RequestCache
from skillmix.llm.prices import PriceTable
from skillmix.pipelines.batch_collect import Collector
from skillmix.pipelines.batch_settle import release_rows, want_again

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
        self.stats = dict.fromkeys(("batches", "lines", "failed", "retried", "refused", "invalid"), 0)
        self.stats.update(unreadable=0, lost=0, saved_usd=0.0)
        self._clients: dict[tuple[Any, ...], BatchAPIClient] = {}
        self.collector = Collector(self)

    def client(self, endpoint: dict[str, Any]) -> BatchAPIClient:
        return client_for(endpoint, self._clients)

    # ------------------------------------------------------------------ one round of batches

    def wanted(self) -> list[dict[str, Any]]:
        return self.cache.batch_lines("state = 'wanted'")

    def reattach(self, endpoints: list[dict[str, Any]] | None = None) -> None:
        """Start a run: lines earlier runs refused (the cap) or gave up (retries) are wanted again, and the
        batches a killed run left are adopted: those the cache knows, and those only the provider knows
        (created, then killed before the id was recorded), found by listing the provider's batches newest
        first, down to the oldest line sent, by the run tag in their metadata or else by their input file.
        ``endpoints`` is not needed any more (each line names its own); kept for the callers."""
        again = want_again(self.cache, ("refused", "failed"))
        if again:
            self.log(f"{again} requests that earlier runs refused (the cap) or gave up are wanted again")
        records = self.cache.batch_records()
        recorded = {record["id"] for record in records}
        orphans = [line["key"] for line in self.cache.batch_lines("state = 'submitted'")
                   if line["batch_id"] not in recorded]  # fmt: skip
        if orphans:  # their batch's record is gone: found again like a batch never recorded
            self.cache.set_lines(orphans, "uploading")
        for record in records:  # recorded, killed before its lines were marked
            where = "state = 'uploading' AND input_file = ?"
            stranded = self.cache.batch_lines(where, (record["input_file"],))
            if stranded:
                self.cache.set_lines([line["key"] for line in stranded], "submitted", batch_id=record["id"])
        uploading = self.cache.batch_lines("state = 'uploading'")
        if uploading:
            self._adopt(uploading)
        uploaded = self.cache.batch_lines("state = 'uploading'")  # uploaded, never created: send again
        if uploaded:
            self.cache.set_lines([line["key"] for line in uploaded], "wanted")

    def _adopt(self, uploading: list[dict[str, Any]]) -> None:
        """Find the batches of ``uploading`` lines at their providers (one listing per server and key)."""
        known = {b["id"] for b in self.cache.batch_records()}
        since = min(float(line["created"]) for line in uploading) - 3600  # clocks differ
        by_client: dict[int, tuple[BatchAPIClient, list[dict[str, Any]]]] = {}
        for line in uploading:
            client = self.client(line["endpoint"])
            by_client.setdefault(id(client), (client, []))[1].append(line)
        for client, lines in by_client.values():
            by_file: dict[str, list[dict[str, Any]]] = {}
            for line in lines:
                by_file.setdefault(line["input_file"], []).append(line)
            found = client.of_run(self.tag, set(by_file), since)
            if found is None:
                self.log(f"{client.client.base_url} lists no batches: {len(lines)} requests uploaded by a "
                         "killed run, whose batch may have been created, are sent again")  # fmt: skip
                continue
            for batch in found:
                file_id = (batch.get("metadata") or {}).get(INPUT_FILE) or batch.get("input_file_id")
                adopted = by_file.get(file_id) or []
                if batch["id"] in known or not adopted:
                    continue
                self.cache.record_batch(batch["id"], file_id, adopted[0]["endpoint"], "adopted", len(adopted))
                self.cache.set_lines([line["key"] for line in adopted], "submitted", batch_id=batch["id"])
                self.log(f"adopted batch {batch['id']} ({len(adopted)} requests) left by an earlier run")

    def submit(self, stage: str) -> int:
        """Send every wanted line (one or more batch files per endpoint); returns how many were sent.
        Under a cap a line is sent only when its reservation (its row's remaining worst case, held by the
        row's first line) fits; the others end ``refused``, so a row is never started unless it can finish."""
        lines = self.wanted()
        by_endpoint: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            by_endpoint.setdefault(repr(sorted(line["endpoint"].items())), []).append(line)
        sent = 0
        for group in by_endpoint.values():
            endpoint = group[0]["endpoint"]
            affordable = [line for line in group if self._reserve(line)]
            kept = {line["key"] for line in affordable}
            refused = [line["key"] for line in group if line["key"] not in kept]
            if refused:
                cap = f"${self.cap:.2f}" if self.cap is not None else "the cap"
                error = f"spending limit of {cap}: its row's worst case does not fit; not sent in a batch"
                self.cache.set_lines(refused, "refused", error=error)
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
        return self.cache.reserve(line["reservation"], float(line["reserve_usd"]), self.cap)

    def release_rows(self) -> None:
        """The run is over: what the rows' reservations still hold is given back (none in flight)."""
        release_rows(self.cache)

    def wait(self) -> None:
        """Poll every open batch until it ends, storing each one's answers as it does; one bar per stage
        (its requests done) with the batches validating, in progress and failed and the time waited."""
        from tqdm import tqdm

        started = time.monotonic()
        bars: dict[str, Any] = {}
        states = ("validating", "in_progress", "finalizing", "cancelling")
        try:
            while True:
                open_batches = self.cache.batch_records(open_only=True)
                if not open_batches:
                    return
                counts: dict[str, dict[str, int]] = {}
                for record in open_batches:
                    try:
                        batch = self.client(record["endpoint"]).retrieve(record["id"])
                    except BatchLost:
                        self.collector.lost(record)
                        continue
                    stage = counts.setdefault(
                        record["stage"], dict.fromkeys(("total", "done", "failed", *states), 0)
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
                    shown = {state: c[state] for state in states if c[state]}
                    bar.set_postfix(**shown, failed=c["failed"], waited=f"{waited:.0f}s", refresh=True)
                if not self.cache.batch_records(open_only=True):
                    return
                if self.stop():
                    raise KeyboardInterrupt
                time.sleep(self.poll)
        finally:
            for bar in bars.values():
                bar.close()

    def _collect(self, record: dict[str, Any], batch: dict[str, Any]) -> None:
        """Store a finished batch's answers (:mod:`skillmix.pipelines.batch_collect`)."""
        self.collector.collect(record, batch)

    def close(self) -> None:
        self.cache.close()


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
            try:
                batch = client_for(record["endpoint"], clients).retrieve(record["id"])
            except BatchLost:
                lines.append(f"  {record['id']}  {record['stage']:<7} unknown to the provider (lost)")
                continue
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
            try:
                batch = client.retrieve(record["id"])
            except BatchLost:
                continue
            if batch["status"] in (*TERMINAL, "cancelling"):
                continue
            lines.append(f"  {record['id']}: {client.cancel(record['id'])['status']}")
        return lines or [f"{out}: no batch is running"]
    finally:
        cache.close()
