"""One client for every remote model: the ``openai`` async client against OpenAI or any OpenAI-compatible
server (vLLM, TGI, llama.cpp, inference providers), with the reliability distilabel does not give.

* a persistent per-request cache (:mod:`skillmix.llm.cache`): a completed request is never paid twice;
* retries of 429, 5xx, timeouts and broken connections with exponential backoff that honours
  ``Retry-After``; other 4xx fail at once;
* bounded concurrency and requests/tokens per minute;
* a result per request, never an exception: :class:`Completion` has a ``status`` of ``ok``, ``refused``,
  ``invalid_request`` (an HTTP 400/413/422: cached, never sent again), ``api_error`` (with the message),
  ``budget`` (its worst case did not fit under the spending cap) or ``interrupted`` (the run was asked to
  stop before it was sent); whose each is: :mod:`skillmix.statuses`;
* tokens and cost per request, a spending limit shared by every process that uses the same cache file.

The API key is read from the environment variable named by the endpoint (``OPENAI_API_KEY`` by default)
at connection time; it is never stored, logged or pickled.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skillmix.llm.cache import RequestCache, request_key
from skillmix.llm.limits import SharedRateLimiter
from skillmix.llm.prices import PriceTable, token_bound
from skillmix.statuses import FINAL, INVALID_REQUEST_HTTP

PLAIN_STOP = "\n###"  # a base model's reply ends where its plain-text prompt would start the next turn
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


@dataclass(frozen=True)
class Endpoint:
    """Where a model is served. ``base_url=None`` means ``OPENAI_BASE_URL`` or api.openai.com."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    identity: str | None = None  # what the cache keys on instead of the URL (e.g. for a random local port)
    mode: str = "chat"  # "completion": a base model, driven through /v1/completions with plain text

    @property
    def cache_identity(self) -> str:
        base = self.identity or f"{self.resolved_base_url() or 'openai'}|{self.model}"
        return base if self.mode == "chat" else f"{base}|{self.mode}"

    def resolved_base_url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def batch_target(self) -> dict[str, str | None]:
        """Where this model's batches go: what a batch line and a batch record name (batch mode)."""
        return {"model": self.model, "base_url": self.resolved_base_url(), "api_key_env": self.api_key_env}


class ClientConfig(BaseModel):
    """How the client treats a server: load bounds, retries, time-outs and the spending limit."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    concurrency: int = Field(16, ge=1, description="requests in flight, all stages together")
    requests_per_minute: float | None = Field(None, gt=0, description="requests per minute, at most")
    tokens_per_minute: float | None = Field(None, gt=0, description="tokens per minute, at most")
    max_retries: int = Field(6, ge=0, description="retries of a failed request (429, 5xx, time-outs)")
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    backoff_base: float = Field(1.0, ge=0, description="first retry delay in seconds, doubled each retry")
    backoff_max: float = Field(60.0, ge=0, description="longest retry delay in seconds")
    max_usd: float | None = Field(None, gt=0, description="stop sending requests once this much is spent")


@dataclass(frozen=True)
class Reservation:
    """What a request may cost under a spending cap: ``id`` names the reservation (a row's, shared by all
    its requests, so that a row once started can always be finished), ``remaining_usd`` is reserved if
    ``id`` holds nothing yet (the worst case of the row from this request on), and ``request_usd`` (this
    request's worst case) is drawn from it when the request is over."""

    id: str
    remaining_usd: float
    request_usd: float
    row: str | None = None  # the row it is for (batch mode keeps one reservation a row across passes)


@dataclass
class Completion:
    text: str | None
    status: str  # ok | refused | invalid_request | api_error | budget | interrupted (skillmix.statuses)
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # what this call cost: 0 when answered from the cache
    paid_usd: float = 0.0  # what the request cost when it was paid (the same, or the cached answer's)
    cached: bool = False
    attempts: int = 0
    finish_reason: str | None = None
    model: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMClient:
    """Async chat completions through one endpoint; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: ClientConfig | None = None,
        cache: RequestCache | None = None,
        prices: PriceTable | None = None,
        stop: Callable[[], bool] | None = None,
        batch: bool = False,
        stage: str | None = None,
    ) -> None:
        self.stage = stage  # the stage that sends (round1, round2, grade): recorded with a batch line
        self.stop = stop or (lambda: False)  # checked before every attempt: True sends nothing more
        self.batch = (
            batch  # a cache miss is not sent: its line waits for a batch (skillmix.pipelines.batches)
        )
        self.endpoint = endpoint
        self.config = config or ClientConfig()
        self.cache = cache if cache is not None else RequestCache(None)
        self.prices = prices or PriceTable()
        self._client: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: SharedRateLimiter | None = None
        self.stats = {"requests": 0, "cached": 0, "retries": 0, "errors": 0}

    def _connect(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                api_key=os.environ.get(self.endpoint.api_key_env) or "not-needed",
                base_url=self.endpoint.resolved_base_url(),
                max_retries=0,
                timeout=self.config.timeout,
            )
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
            self._limiter = SharedRateLimiter(
                self.cache, self.config.requests_per_minute, self.config.tokens_per_minute
            )
        return self._client

    def request_body(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    async def complete(
        self,
        messages: list[dict[str, str]],
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
        reservation: Reservation | None = None,
        plain: tuple[str, str] | None = None,
    ) -> Completion:
        """One chat completion: from the cache, or sent within the cap and the limits; never raises.

        With a spending cap, the request's worst case (or ``reservation``, the worst case of the whole row
        it belongs to, held from its first request on) must fit under the cap before anything is sent.
        ``plain`` (completion mode): the conversation as one prompt and the reply's first words; the prompt
        goes to ``/v1/completions`` and the reply is those words followed by the model's continuation.
        """
        body = self.request_body(messages, temperature, max_tokens, seed)
        prefix = None
        if plain is not None:
            prompt, prefix = plain
            del body["messages"]
            body.update(prompt=prompt, stop=[PLAIN_STOP])
            messages = [{"role": "user", "content": prompt}]
        key = request_key(self.endpoint.cache_identity, body)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats["cached"] += 1
            paid = hit.get("paid_usd") or hit.get("cost_usd") or 0.0  # older caches: cost_usd
            return Completion(**{**hit, "cached": True, "cost_usd": 0.0, "paid_usd": paid})
        if self.stop():
            return Completion(None, "interrupted", "the run was interrupted before this request was sent")
        cap = self.config.max_usd
        prompt_bound = token_bound(messages)
        if self.batch:
            return self._defer(key, body, prompt_bound, max_tokens, reservation)
        if reservation is None:
            worst = self.prices.worst_case(self.endpoint.model, prompt_bound, max_tokens)
            reservation = Reservation(f"{key}:{uuid.uuid4().hex}", worst, worst)  # this call's alone
        if cap is not None and not self.cache.reserve(reservation.id, reservation.remaining_usd, cap):
            return Completion(None, "budget", f"spending limit of ${cap:.2f}: its worst case is not covered")
        completion = await self._attempts(body, prompt_bound + max_tokens, prefix)
        completion.model = self.endpoint.model
        billed = None
        if completion.input_tokens or completion.output_tokens:
            completion.cost_usd = completion.paid_usd = self.prices.cost(
                self.endpoint.model, completion.input_tokens, completion.output_tokens
            )
            billed = (
                key,
                self.endpoint.model,
                completion.input_tokens,
                completion.output_tokens,
                completion.cost_usd,
            )
        if cap is not None:
            self.cache.settle(reservation.id, reservation.request_usd, billed)
        elif billed is not None:
            self.cache.record_spend(*billed)
        if completion.status in FINAL:
            self.cache.put(key, body, {k: v for k, v in completion.to_dict().items() if k != "cached"})
        return completion

    def _defer(
        self,
        key: str,
        body: dict[str, Any],
        prompt_bound: int,
        max_tokens: int,
        reservation: Reservation | None = None,
    ) -> Completion:
        """Batch mode: the request's line is kept for the next batch (``deferred``, never cached), or
        its batch's end is told: refused by the spending cap (``budget``) or failed past its retries.
        Under a cap the line names its row's reservation (``batchrow:<row>``, the same in every pass of the
        run), which its batch reserves for the row's remaining worst case before it is sent."""
        line = self.cache.batch_line(key)
        if line is not None and line["state"] in ("refused", "failed"):
            return Completion(None, "budget" if line["state"] == "refused" else "api_error", line["error"])
        worst = self.prices.worst_case(self.endpoint.model, prompt_bound, max_tokens, batch=True)
        row = None
        if reservation is not None and reservation.row is not None:
            worst = reservation.request_usd
            row = (f"batchrow:{reservation.row}", reservation.remaining_usd)
        self.cache.want(key, self.endpoint.batch_target(), body, worst, row, stage=self.stage)
        return Completion(None, "deferred", "waiting for its batch")

    async def _attempts(self, body: dict[str, Any], estimate: int, prefix: str | None = None) -> Completion:
        """Send ``body`` with retries, within the concurrency and the run's rate limits."""
        client = self._connect()
        assert self._semaphore is not None and self._limiter is not None
        attempt = 0
        async with self._semaphore:
            while True:
                attempt += 1
                event = await self._limiter.acquire(estimate)
                if self.stop():
                    return Completion(None, "interrupted", "the run was interrupted", attempts=attempt)
                try:
                    completion = await (
                        self._send(client, body) if prefix is None else self._send_plain(client, body, prefix)
                    )
                except _Transient as exc:
                    self._limiter.correct(event)
                    if attempt > self.config.max_retries:
                        self.stats["errors"] += 1
                        return Completion(
                            None, "api_error", f"{exc} (after {attempt} attempts)", attempts=attempt
                        )
                    self.stats["retries"] += 1
                    await asyncio.sleep(self._backoff(attempt, exc.retry_after))
                    continue
                except _Fatal as exc:
                    self._limiter.correct(event)
                    self.stats["errors"] += 1
                    return Completion(None, exc.status, str(exc), attempts=attempt)
                self._limiter.correct(event, completion.input_tokens + completion.output_tokens)
                self.stats["requests"] += 1
                completion.attempts = attempt
                return completion

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.backoff_max)
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    async def _create(self, create: Any, body: dict[str, Any]) -> Any:
        """``create(**body)`` (the openai client's chat or text completions); errors as transient or fatal."""
        import openai

        try:
            response = await create(**body)
        except openai.APIStatusError as exc:
            message = _error_message(exc)
            if exc.status_code in RETRYABLE_STATUS:
                raise _Transient(f"HTTP {exc.status_code}: {message}", _retry_after(exc.response)) from None
            raise _Fatal(f"HTTP {exc.status_code}: {message}", exc.status_code) from None
        except openai.APITimeoutError:
            raise _Transient(f"timed out after {self.config.timeout:g}s") from None
        except openai.APIConnectionError as exc:
            raise _Transient(f"connection error: {exc.__cause__ or exc}") from None
        except (openai.APIResponseValidationError, ValueError) as exc:  # malformed response body
            raise _Transient(f"malformed response: {str(exc)[:200]}") from None
        if not getattr(response, "choices", None):
            raise _Transient("malformed response: no choices")
        return response

    async def _send(self, client: Any, body: dict[str, Any]) -> Completion:
        response = await self._create(client.chat.completions.create, body)
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            return Completion(
                None,
                "refused",
                refusal or "content filter",
                tokens_in,
                tokens_out,
                finish_reason=choice.finish_reason,
            )
        if not message.content or not message.content.strip():
            raise _Transient("empty completion")
        return Completion(
            message.content, "ok", None, tokens_in, tokens_out, finish_reason=choice.finish_reason
        )

    async def _send_plain(self, client: Any, body: dict[str, Any], prefix: str) -> Completion:
        """A base model's continuation through ``/v1/completions``, after ``prefix``."""
        response = await self._create(client.completions.create, body)
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        # a base model that stops at once wrote nothing: that is its answer (a retry would say it again)
        return Completion(
            prefix + (choice.text or ""),
            "ok",
            None,
            tokens_in,
            tokens_out,
            finish_reason=choice.finish_reason,
        )


class _Fatal(Exception):
    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status

    @property
    def status(self) -> str:
        """``invalid_request`` when the request itself is wrong, else ``api_error`` (a bad key, an unknown
        model: the infrastructure's, fixed outside the run)."""
        return "invalid_request" if self.http_status in INVALID_REQUEST_HTTP else "api_error"


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
            return seconds / 1000 if name == "retry-after-ms" else seconds
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


def completion_from(body: dict[str, Any]) -> Completion:
    """A chat completion's JSON (a batch line's response body) as the :class:`Completion` a direct request
    would have given (an empty reply is an ``api_error``: sent again, it may be answered)."""
    choice = (body.get("choices") or [{}])[0]
    usage = body.get("usage") or {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    message, finish = choice.get("message") or {}, choice.get("finish_reason")
    if message.get("refusal") or finish == "content_filter":
        return Completion(None, "refused", message.get("refusal") or "content filter", tokens_in, tokens_out,
                          finish_reason=finish)  # fmt: skip
    content = message.get("content")
    if not content or not str(content).strip():
        return Completion(None, "api_error", "empty completion", tokens_in, tokens_out, finish_reason=finish)
    return Completion(content, "ok", None, tokens_in, tokens_out, finish_reason=finish)
