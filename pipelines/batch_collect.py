"""How a batch's end is recorded (batch mode, :mod:`skillmix.pipelines.batches`): each of its lines answered,
failed, sent again or given up, its spend in the ledger once, in one transaction.

**Once.** A batch is collected in one transaction of the run's cache, over its lines still ``submitted``:
a kill or Ctrl-C during the collection rolls it all back, and the next run collects it again from the
start; a batch already collected has no ``submitted`` line left, so nothing is billed twice.

**Priced by its own lines.** Each line is priced by the model of its own endpoint (its role's), never by
the endpoint the batch record names (an adopted batch, found again by listing, names its lines' endpoint).

**What follows each end of a line** is :mod:`skillmix.pipelines.batch_settle`'s rule (the one batch files
follow too), at the batch price: an answer billed and stored, an invalid request final, retryable statuses
and lines not run (expired, cancelled, a line missing from the files or one that cannot be read) sent again
up to ``--max-retries`` with each try counted, any other status ``api_error`` at once. What is the batch
API's alone is here: a batch the provider no longer knows (its lines sent again, the cache checked first)
and a batch that failed validation.

**A batch that failed validation** (``status == "failed"``) shows its ``errors``: lines its errors name
(``errors.data[].line``, 1-based in the input file) end ``invalid_request`` and the others are sent again
with no attempt counted; an error of the account (:data:`skillmix.llm.batch.ACCOUNT_CODES`, such as
``token_limit_exceeded``) stops the run with the provider's message (:class:`BatchRefused`), its lines
wanted again by the next run; any other error counts one attempt for every line.
"""

from __future__ import annotations

from typing import Any

from skillmix.llm.batch import ACCOUNT_CODES, BatchRefused, LineResult
from skillmix.pipelines.batch_settle import LineSettler


class Collector:
    """Records the end of the batches of one :class:`~skillmix.pipelines.batches.Batcher`."""

    def __init__(self, batcher: Any) -> None:
        self.b = batcher
        self.cache, self.prices, self.stats, self.log = (
            batcher.cache,
            batcher.prices,
            batcher.stats,
            batcher.log,
        )
        self.settler = LineSettler(
            self.cache, self.prices, batcher.max_retries, self.stats, batch_price=True, unit="batches"
        )

    def collect(self, record: dict[str, Any], batch: dict[str, Any]) -> None:
        """A batch that ended (completed, expired, cancelled): every line of it still ``submitted``."""
        if batch["status"] == "failed":
            self.failed(record, batch)
            return
        results, unreadable = self.b.client(record["endpoint"]).read(batch)
        if unreadable:
            self.stats["unreadable"] += unreadable
            self.log(f"batch {record['id']}: {unreadable} output lines could not be read; their requests "
                     "are sent again")  # fmt: skip
        with self.cache.transaction():
            for line in self.cache.batch_lines("batch_id = ? AND state = 'submitted'", (record["id"],)):
                self.line(line, results.get(line["key"]))
            self.cache.set_batch(record["id"], batch["status"])

    def lost(self, record: dict[str, Any]) -> None:
        """A recorded batch the provider no longer knows: its lines answered meanwhile are kept, the others
        are sent again."""
        self.log(f"batch {record['id']} is no longer known to the provider: its requests are sent again")
        self.stats["lost"] += 1
        with self.cache.transaction():
            for line in self.cache.batch_lines("batch_id = ? AND state = 'submitted'", (record["id"],)):
                if self.cache.get(line["key"]) is not None:
                    self.cache.close_line(
                        line["key"], "answered", (line["reservation"], line["worst_usd"], None)
                    )
                else:
                    self.settler.again(line, f"its batch {record['id']} is no longer known to the provider")
            self.cache.set_batch(record["id"], "lost")

    def failed(self, record: dict[str, Any], batch: dict[str, Any]) -> None:
        """A batch the provider failed at validation (module docstring)."""
        errors = [e for e in ((batch.get("errors") or {}).get("data") or []) if isinstance(e, dict)]
        shown = "; ".join(f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line")
                          else "") for e in errors[:5]) or "no errors given"  # fmt: skip
        self.log(f"batch {record['id']} failed validation: {shown}")
        by_line = {int(e["line"]): e for e in errors if isinstance(e.get("line"), int)}
        named = {}
        if by_line:
            order = self.b.client(record["endpoint"]).input_ids(record["input_file"])
            named = {order[n - 1]: by_line[n] for n in by_line if 0 < n <= len(order)}
        account = [e for e in errors if e.get("code") in ACCOUNT_CODES]
        with self.cache.transaction():
            for line in self.cache.batch_lines("batch_id = ? AND state = 'submitted'", (record["id"],)):
                if line["key"] in named:
                    self.settler.invalid(
                        line, f"{named[line['key']].get('code')}: {named[line['key']].get('message')}"
                    )
                elif named or account:  # not this line's doing: sent again, no attempt counted
                    self.cache.set_lines([line["key"]], "wanted")
                else:
                    self.settler.again(line, f"its batch failed validation: {shown}")
            self.cache.set_batch(record["id"], "failed")
        if account and not named:
            raise BatchRefused(
                f"the provider refused batch {record['id']} for the account: {account[0].get('message')} "
                "Nothing of it ran or was billed. Wait until the account's running batches are done "
                f"(`skillmix batches status {self.b.work.parent}`) or raise the limit, then run the same "
                "command again."
            )

    def line(self, line: dict[str, Any], result: LineResult | None) -> None:
        """One line of a batch that ended, as its output or error file tells (None: not in them)."""
        if result is None:
            self.settler.settle(line, None, None, None)
            return
        message = result.message or result.code
        self.settler.settle(line, result.status, result.body, message)
