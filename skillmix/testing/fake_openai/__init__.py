"""A fake OpenAI-compatible HTTP server for tests and benchmarks: scripted replies, faults, exact accounting.

Tests and benchmarks start it themselves, on 127.0.0.1 and a free port, in a background thread::

    with FakeOpenAIServer(latency=0.2, faults=[Fault(status=429, every=3, retry_after=0.5)]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...
        server.count(status=429), server.distinct_keys(), server.requests

or as a subprocess (``python -m skillmix.testing.fake_openai --port 0 --latency 0.2 --fault 429:every=3``),
which prints ``BASE_URL http://127.0.0.1:PORT/v1`` on its first stdout line and a JSON summary of the
request counts when it gets SIGTERM or SIGINT; ``--log FILE`` appends one JSON line per request.

Endpoints: ``POST /v1/chat/completions`` (the Chat Completions schema; ``stream``, ``n`` and ``max_tokens`` /
``max_completion_tokens`` are honoured, other fields are accepted and ignored), ``GET /v1/models`` and
``GET /v1/models/{id}``. Anything else is a 404 with an OpenAI-style error body. Tokens are counted as
whitespace-separated words (at least 1 per prompt and per completion).

Accounting. Every request is recorded as a :class:`RequestRecord` when the server has decided its answer
(before any latency or hang, so a request whose client gave up is still counted). Its ``key`` is the SHA-256
of the canonical JSON of the request body (``sort_keys``; for paths other than chat completions the method
and path are hashed in too), and ``attempt`` is how many earlier requests had the same key (0 the first
time), so faults can be deterministic per request and retries of one request can be counted.

Replies. A *responder* ``(body: dict) -> Reply | str`` decides what a chat completion answers; the default,
:class:`SkillMixResponder`, is a deterministic scripted "model" that understands the skillmix generation and
grader prompts. :class:`ScriptedResponder` replays a list of replies. :class:`Reply` can also ask for an
error status (with ``Retry-After``), a hang (to trigger client timeouts), a verbatim (malformed) body or a
refusal. :class:`Fault` rules, applied before the responder (first match wins), inject such replies into
every n-th distinct request or a hash-chosen fraction of them, on their first ``attempts`` attempts.

Only the standard library is used, so the server runs wherever the package does.

The package, by concern (every public name is re-exported here):

* :mod:`~skillmix.testing.fake_openai.wire`: ``CHAT_PATH``, ``MODELS_PATH``, :func:`request_key`,
  :func:`last_user_message` and the other helpers every part shares;
* :mod:`~skillmix.testing.fake_openai.responders`: :class:`Reply`, :class:`ScriptedResponder`,
  :class:`SkillMixResponder`;
* :mod:`~skillmix.testing.fake_openai.faults`: :class:`Fault`, :func:`parse_fault`, OpenAI-style error bodies;
* :mod:`~skillmix.testing.fake_openai.batches`: ``/v1/files`` and ``/v1/batches``, as strict as OpenAI's
  Batch API reference (:mod:`~skillmix.testing.fake_openai.batch_rules`: what it refuses, with the source of
  each rule), with the whole life cycle, scripted faults and provider profiles;
* :mod:`~skillmix.testing.fake_openai.handler`: the loopback HTTP server and request handler classes;
* :mod:`~skillmix.testing.fake_openai.server`: :class:`FakeOpenAIServer`, :class:`RequestRecord`;
* :mod:`~skillmix.testing.fake_openai.cli`: :func:`main`, run by ``python -m skillmix.testing.fake_openai``;
* :mod:`~skillmix.testing.fake_openai.run_batch`: the offline batch runner, ``python -m
  skillmix.testing.fake_openai run-batch -i IN -o OUT --model M`` (``vllm run-batch``'s arguments and format).
"""

from __future__ import annotations

from skillmix.testing.fake_openai.cli import main
from skillmix.testing.fake_openai.faults import Fault, parse_fault
from skillmix.testing.fake_openai.responders import Reply, Responder, ScriptedResponder, SkillMixResponder
from skillmix.testing.fake_openai.server import FakeOpenAIServer, RequestRecord
from skillmix.testing.fake_openai.wire import CHAT_PATH, MODELS_PATH, last_user_message, request_key

__all__ = [
    "CHAT_PATH",
    "MODELS_PATH",
    "FakeOpenAIServer",
    "Fault",
    "Reply",
    "RequestRecord",
    "Responder",
    "ScriptedResponder",
    "SkillMixResponder",
    "last_user_message",
    "main",
    "parse_fault",
    "request_key",
]
