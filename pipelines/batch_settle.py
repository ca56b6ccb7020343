"""One rule for settling a batch output line, whoever ran it: the batch API
(:mod:`skillmix.pipelines.batch_collect`) or an engine reading batch files
(:mod:`skillmix.pipelines.batch_files`).

A line of an output or error file (OpenAI's request output format,
platform.openai.com/docs/api-reference/batch/request-output, or ``vllm run-batch``'s) is a ``response``
with an HTTP status and a body, or an ``error``; a line missing from the files, or one that cannot be read,
is a line not run. Each becomes the request's result in one transaction of the run's cache
(:meth:`skillmix.llm.cache.RequestCache.close_line`): its reservation settled, its spend recorded, its
answer stored, the line moved on:

* 200 with a body: billed at its own endpoint's model (at the batch price for the batch API, at the price
  table's direct price for batch files: no provider bill), its line's worst case drawn from its
  reservation; stored in the cache when final (``ok``, ``refused``), else sent again (an empty reply);
* 400, 413, 422 (:data:`skillmix.statuses.INVALID_REQUEST_HTTP`): ``invalid_request``, stored like an
  answer, never sent again (as it is direct);
* 408, 409, 425, 429, 5xx (the direct client's ``RETRYABLE_STATUS``) and lines not run (expired,
  cancelled, missing, unreadable): sent again, one attempt counted, up to ``max_retries``; then
  ``api_error``;
* any other status (401, 403, 404 such as a model the engine does not serve, a 200 without a body, ...):
  ``api_error`` at once (sending it again would get the same).

A line sent again keeps its reservation held (its row's, so a started row can always finish); a billed
one (an empty reply) has drawn its worst case, and is sent again on a reservation of its own
(``batch:<key>``, its worst case). Failures of a whole batch (validation, the account's limits, a batch
the provider forgot) exist only for the batch API and stay in :mod:`skillmix.pipelines.batch_collect`.
"""

from __future__ import annotations

from typing import Any

from skillmix.llm.batch_files import is_answer
from skillmix.llm.cache import RequestCache
from skillmix.llm.client import RETRYABLE_STATUS, completion_from
from skillmix.llm.prices import PriceTable
from skillmix.statuses import FINAL, INVALID_REQUEST_HTTP

NOT_RUN = "not run by its batch"
Spend = tuple[str, str, int, int, float]


class LineSettler:
    """Settles the output lines of one run's cache (module doc).

    ``batch_price``: bill at the provider's batch price (the batch API), else at the direct price (batch
    files); ``unit``: what a try is called in a given-up line's error (``batches``, ``batch files``);
    ``stats``: the caller's counters (``retried``, ``failed``, ``invalid``, and ``saved_usd`` at the batch
    price), counted in place."""

    def __init__(
        self,
        cache: RequestCache,
        prices: PriceTable,
        max_retries: int,
        stats: dict[str, Any],
        *,
        batch_price: bool,
        unit: str,
    ) -> None:
        self.cache, self.prices, self.max_retries, self.stats = cache, prices, max_retries, stats
        self.batch_price, self.unit = batch_price, unit

    def settle(self, line: dict[str, Any], status: int | None, body: Any, message: str | None) -> None:
        """One output line of ``line``'s request: its HTTP ``status`` (None: not run), its ``body`` and its
        error ``message`` (None: none given)."""
        if is_answer(status, body):
            self.answer(line, body)
        elif status in INVALID_REQUEST_HTTP:
            self.invalid(line, message or f"HTTP {status}")
        elif status is None:
            self.again(line, message or NOT_RUN)
        elif status in RETRYABLE_STATUS:
            self.again(line, message or f"HTTP {status}")
        else:
            self.give_up(line, f"HTTP {status}: {message or 'no message'}")

    def answer(self, line: dict[str, Any], body: dict[str, Any]) -> None:
        """A reply: billed, then stored as a direct answer would be, or sent again when it is not final."""
        key, model = line["key"], line["endpoint"]["model"]
        completion = completion_from(body)
        completion.model = model
        tokens = (completion.input_tokens, completion.output_tokens)
        usd = self.prices.cost(model, *tokens, batch=self.batch_price)
        if self.batch_price:
            self.stats["saved_usd"] += self.prices.cost(model, *tokens) - usd
        completion.cost_usd = completion.paid_usd = usd
        spend = (key, model, *tokens, usd)
        if completion.status not in FINAL:  # an empty reply: billed, and asked again
            self.again(line, completion.error or completion.status, spend)
            return
        answer = {k: v for k, v in completion.to_dict().items() if k != "cached"}
        self.cache.close_line(key, "answered", self._settled(line, spend), (line["body"], answer))

    def invalid(self, line: dict[str, Any], message: str) -> None:
        """The request itself is wrong: cached as ``invalid_request``, never sent again."""
        answer = {"text": None, "status": "invalid_request", "error": message, "input_tokens": 0,
                  "output_tokens": 0}  # fmt: skip
        self.cache.close_line(line["key"], "answered", self._settled(line), (line["body"], answer))
        self.stats["invalid"] += 1

    def again(self, line: dict[str, Any], error: str, spend: Spend | None = None) -> None:
        """Sent again (one attempt counted), or given up past ``max_retries``. Its reservation stays held
        for the next send; a billed one (``spend``) has drawn its worst case and reserves it anew, alone."""
        attempts = int(line["attempts"]) + 1
        if attempts > self.max_retries:
            self.give_up(line, f"{error} (after {attempts} {self.unit})", spend)
            return
        values: dict[str, Any] = {"attempts": attempts, "error": error}
        if spend is not None:
            values.update(reservation=f"batch:{line['key']}", reserve_usd=float(line["worst_usd"]))
        self.cache.close_line(line["key"], "wanted", self._settled(line, spend) if spend else None, **values)
        self.stats["retried"] += 1

    def give_up(self, line: dict[str, Any], error: str, spend: Spend | None = None) -> None:
        """``api_error``: not sent again in this run; its worst case drawn from its reservation."""
        self.cache.close_line(line["key"], "failed", self._settled(line, spend), error=error)
        self.stats["failed"] += 1

    @staticmethod
    def _settled(line: dict[str, Any], spend: Spend | None = None) -> tuple[str, float, Spend | None]:
        return (line["reservation"], float(line["worst_usd"]), spend)


def release_rows(cache: RequestCache) -> None:
    """A run is over and none of its lines is out (in a batch at a provider, or in a batch file waiting for
    its output): what the rows' reservations still hold (a row that ended early) is given back."""
    if cache.batch_lines("state IN ('submitted', 'uploading', 'written')"):
        return
    with cache.transaction() as db:  # files:<key>: a batch-files line's own, before rows were reserved
        db.execute(
            "DELETE FROM reservations WHERE id LIKE 'batchrow:%' OR id LIKE 'batch:%' OR id LIKE 'files:%'"
        )


def want_again(cache: RequestCache, states: tuple[str, ...]) -> int:
    """A run starts: the lines earlier runs ended in ``states`` (``refused`` by the cap, ``failed`` past the
    retries) are wanted afresh (the cap or the retries may be higher now); returns how many."""
    marks = ", ".join("?" * len(states))
    return cache.forget_lines(f"state IN ({marks})", states)
