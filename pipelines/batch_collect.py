"""How a batch's end is recorded (batch mode, :mod:`skillmix.pipelines.batches`): each of its lines answered,
failed, sent again or given up, its spend in the ledger once, in one transaction.

**Once.** A batch is collected in one transaction of the run's cache, over its lines still ``submitted``:
a kill or Ctrl-C during the collection rolls it all back, and the next run collects it again from the
start; a batch already collected has no ``submitted`` line left, so nothing is billed twice.

**Priced by its own lines.** Each line is priced by the model of its own endpoint (its role's), never by
the endpoint the batch record names (an adopted batch, found again by listing, names its lines' endpoint).

**What follows each end of a line** (the request's HTTP status in the output or error file):

* 200: billed at the batch price; stored in the cache when final (``ok``, ``refused``), else sent again;
* 400, 413, 422 (``INVALID_REQUEST_HTTP``): ``invalid_request``, stored like an answer, never sent again;
* 408, 409, 425, 429, 5xx (the direct client's ``RETRYABLE_STATUS``): sent again in the next batch up to
  ``--max-retries``, then ``api_error``;
* any other status (401, 403, 404, ...): ``api_error`` at once (a new batch would get the same);
* not run (expired, cancelled, a line missing from the files or one that cannot be read, a batch the
  provider no longer knows): sent again, and it counts as an attempt.

**A batch that failed validation** (``status == "failed"``) shows its ``errors``: lines its errors name
(``errors.data[].line``, 1-based in the input file) end ``invalid_request`` and the others are sent again
with no attempt counted; an error of the account (:data:`skillmix.llm.batch.ACCOUNT_CODES`, such as
``token_limit_exceeded``) stops the run with the provider's message (:class:`BatchRefused`), its lines
wanted again by the next run; any other error counts one attempt for every line.
"""

from __future__ import annotations

from typing import Any

from skillmix.llm.batch import ACCOUNT_CODES, BatchRefused, LineResult
from skillmix.llm.client import RETRYABLE_STATUS, completion_from
from skillmix.statuses import FINAL, INVALID_REQUEST_HTTP

NOT_RUN = "not run by its batch"


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
                    self.cache.settle(line["reservation"], float(line["worst_usd"]), None)
                    self.cache.set_lines([line["key"]], "answered")
                else:
                    self.again(line, f"its batch {record['id']} is no longer known to the provider")
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
                    self.invalid(
                        line, f"{named[line['key']].get('code')}: {named[line['key']].get('message')}"
                    )
                elif named or account:  # not this line's doing: sent again, no attempt counted
                    self.cache.set_lines([line["key"]], "wanted")
                else:
                    self.again(line, f"its batch failed validation: {shown}")
            self.cache.set_batch(record["id"], "failed")
        if account and not named:
            raise BatchRefused(
                f"the provider refused batch {record['id']} for the account: {account[0].get('message')} "
                "Nothing of it ran or was billed. Wait until the account's running batches are done "
                f"(`skillmix batches status {self.b.work.parent}`) or raise the limit, then run the same "
                "command again."
            )

    def line(self, line: dict[str, Any], result: LineResult | None) -> None:
        """One line of a batch that ended, as its output or error file tells (module docstring)."""
        key, rid, worst = line["key"], line["reservation"], float(line["worst_usd"])
        if result is not None and result.status == 200 and isinstance(result.body, dict):
            model = line["endpoint"]["model"]
            completion = completion_from(result.body)
            completion.model = model
            usd = self.prices.cost(model, completion.input_tokens, completion.output_tokens, batch=True)
            direct = self.prices.cost(model, completion.input_tokens, completion.output_tokens)
            completion.cost_usd = completion.paid_usd = usd
            self.cache.settle(
                rid, worst, (key, model, completion.input_tokens, completion.output_tokens, usd)
            )
            self.stats["saved_usd"] += direct - usd
            if completion.status in FINAL:
                self.cache.put(key, line["body"], completion.to_dict())
                self.cache.set_lines([key], "answered")
            else:
                self.again(line, completion.error or completion.status, billed=True)
        elif result is not None and result.status in INVALID_REQUEST_HTTP:
            self.invalid(line, _message(result.body) or f"HTTP {result.status}")
        elif result is None or result.status is None:
            self.again(line, NOT_RUN if result is None else (_message(result.body) or result.code or NOT_RUN))
        elif result.status in RETRYABLE_STATUS:
            self.again(line, _message(result.body) or f"HTTP {result.status}")
        else:
            self.give_up(line, f"HTTP {result.status}: {_message(result.body) or 'no message'}")

    def invalid(self, line: dict[str, Any], message: str) -> None:
        """The request itself is wrong: cached as ``invalid_request``, never sent again."""
        answer = {"text": None, "status": "invalid_request", "error": message, "input_tokens": 0,
                  "output_tokens": 0}  # fmt: skip
        self.cache.settle(line["reservation"], float(line["worst_usd"]), None)
        self.cache.put(line["key"], line["body"], answer)
        self.cache.set_lines([line["key"]], "answered")
        self.stats["invalid"] += 1

    def again(self, line: dict[str, Any], error: str, billed: bool = False) -> None:
        """Sent again in the next batch (one attempt counted), or given up past ``max_retries``. Its
        reservation stays held for the next send (drawn for what was billed when ``billed``)."""
        attempts = int(line["attempts"])
        if attempts >= self.b.max_retries:
            self.give_up(line, f"{error} (after {attempts + 1} batches)", drawn=billed)
            return
        again: dict[str, Any] = {"attempts": attempts + 1, "error": error}
        if billed:  # its worst case was drawn by the billing: the next send reserves it anew, on its own
            again.update(reservation=f"batch:{line['key']}", reserve_usd=float(line["worst_usd"]))
        self.cache.set_lines([line["key"]], "wanted", **again)
        self.stats["retried"] += 1

    def give_up(self, line: dict[str, Any], error: str, drawn: bool = False) -> None:
        """``api_error``: not sent again in this run (the same command again sends it)."""
        if not drawn:
            self.cache.settle(line["reservation"], float(line["worst_usd"]), None)
        self.cache.set_lines([line["key"]], "failed", error=error)
        self.stats["failed"] += 1


def _message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("message")
        return body.get("message")
    return None
