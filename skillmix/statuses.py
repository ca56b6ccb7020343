"""Every status a request of a row can end with, and whose doing it is: the one table the scores follow.

=================  ==============  =========================================================================
status             whose           what it is, and what follows
=================  ==============  =========================================================================
``ok``             --              answered
``refused``        the model's     a refusal, or the provider's content filter
``unparseable``    the model's     a generation with no text after ``Answer:`` (a grade: see below)
``truncated``      the model's     the reply was cut at ``max_tokens`` (finish reason ``length``)
``invalid_request`` the request's  an HTTP 400, 413 or 422 (context length, invalid request): retrying cannot
                                   fix it, so it is cached like an answer and a re-run never sends it again
``api_error``      the infra's     what is left after the retries: 5xx, time-outs, broken connections, empty
                                   completions, a local server out of memory, other 4xx (a bad key, an
                                   unknown model); never cached, so the same command again retries it
``budget``         not run         the spending cap did not let it start
``interrupted``    not run         the run was stopped before it was sent
``skipped``        not run         an earlier stage of its row failed
``deferred``       not run         batch mode: waiting for its batch (a finished run has none left)
=================  ==============  =========================================================================

In an evaluation (:mod:`skillmix.evaluation.score`) a generation is **failed** (scored 0, counted in
``failed_generations``) when the model's or the request's doing stopped it; **errored** (left out of the
metrics, counted and listed, and the run exits 1 so that the same command retries just those) when the
infrastructure did, in the student's requests or in any of the judge's; **not run** when it never started.
A grader run whose reply cannot be parsed, or that the judge's server refused as an invalid request, loses
its vote (its points are missing, never zeros).
"""

from __future__ import annotations

from collections.abc import Iterable

OK, MODEL, REQUEST, INFRASTRUCTURE, NOT_RUN = "ok", "model", "request", "infrastructure", "not run"
WHOSE = {
    "ok": OK,
    "refused": MODEL,
    "unparseable": MODEL,
    "truncated": MODEL,
    "invalid_request": REQUEST,
    "api_error": INFRASTRUCTURE,
    "budget": NOT_RUN,
    "interrupted": NOT_RUN,
    "skipped": NOT_RUN,
    "deferred": NOT_RUN,
}
# HTTP statuses that say the request itself is wrong (no retry or re-run can change the answer).
INVALID_REQUEST_HTTP = frozenset({400, 413, 422})
# Statuses whose completion the request cache keeps: sending the request again would get the same.
FINAL = frozenset({"ok", "refused", "invalid_request"})


def whose(status: str | None) -> str:
    """The class of a status (an unknown one is the infrastructure's: it is retried, never scored)."""
    return WHOSE.get(status or "", INFRASTRUCTURE)


def generation_class(stage_statuses: Iterable[str | None], grader_statuses: Iterable[str | None]) -> str:
    """``failed``, ``errored``, ``not run`` or ``ok`` for a generation: its two rounds in order, then its
    grader runs (an unparseable grade is the judge's reply, not a failure of the generation)."""
    for status in stage_statuses:
        kind = whose(status)
        if kind in (MODEL, REQUEST):
            return "failed"
        if kind in (INFRASTRUCTURE, NOT_RUN):
            return "errored" if kind == INFRASTRUCTURE else NOT_RUN
    graders = [whose(status) for status in grader_statuses if status not in ("ok", "unparseable")]
    if INFRASTRUCTURE in graders:
        return "errored"
    return NOT_RUN if NOT_RUN in graders else OK
