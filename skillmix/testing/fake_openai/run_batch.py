"""The fake's offline batch runner: ``vllm run-batch`` with the fake's responder in place of a model,
``python -m skillmix.testing.fake_openai run-batch -i IN -o OUT --model M``, so that ``--batch-files`` is
tested end to end with no GPU.

What it mirrors, from vLLM's ``vllm/entrypoints/openai/run_batch.py`` (``BatchRequestInput``,
``BatchRequestOutput``, ``BatchResponseData``) and its guide "Offline Inference with the OpenAI Batch file
format" (docs.vllm.ai, ``examples/offline_inference/openai``), which follow OpenAI's batch file format
(platform.openai.com/docs/api-reference/batch/request-input):

* the arguments: ``-i/--input-file`` and ``-o/--output-file`` (local paths) and ``--model`` are required;
  ``--served-model-name`` names the model requests may ask for (default: ``--model``);
* the input: one ``{"custom_id", "method", "url", "body"}`` object a line (blank lines skipped); a line that
  is not such an object ends the whole run with an error (vLLM's ``model_validate_json`` raises), leaving
  the output written so far;
* the output: **one** file, one line per input line in the input's order: ``{"id": "vllm-...",
  "custom_id", "response": {"status_code": 200, "request_id": "vllm-batch-...", "body": <chat.completion>},
  "error": null}``; a request that fails has ``response`` with its ``status_code`` and a null ``body``, and
  the ``error``: a model not served (404, "The model `M` does not exist."), a ``stream`` request (400), a
  url other than ``/v1/chat/completions`` (400: the fake serves no embeddings, scores or reranking, as a
  generative model does not), or the responder's own error status;
* the completion: the fake server's own (its responder, token counts and ``usage``), so that a request
  answered here equals the same request answered by :class:`FakeOpenAIServer` directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from skillmix.testing.fake_openai.responders import SkillMixResponder
from skillmix.testing.fake_openai.server import FakeOpenAIServer
from skillmix.testing.fake_openai.wire import CHAT_PATH, request_key

__all__ = ["answer_line", "main"]

SUPPORTED = "Supported endpoints: /v1/chat/completions, /v1/embeddings, /score, /rerank."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skillmix.testing.fake_openai run-batch",
        allow_abbrev=False,
        description="vllm run-batch with the fake's responder: an OpenAI batch input file in, one output "
        "file out.",
    )
    parser.add_argument("-i", "--input-file", required=True, help="the batch input file (JSONL)")
    parser.add_argument("-o", "--output-file", required=True, help="the output file to write (JSONL)")
    parser.add_argument("--model", required=True, help="the model served (what requests must name)")
    parser.add_argument("--served-model-name", nargs="+", default=None, help="names the model is served as")
    parser.add_argument("--seed", type=int, default=0, help="seed of the SkillMixResponder")
    parser.add_argument("--accept-rate", type=float, default=0.7)
    args = parser.parse_args(argv)
    responder = SkillMixResponder(seed=args.seed, accept_rate=args.accept_rate)
    server = FakeOpenAIServer(responder, model=args.model)
    served = set(args.served_model_name or [args.model])
    with open(args.output_file, "w", encoding="utf-8") as out:
        count = run(server, served, args.input_file, out)
    if count is None:
        return 1
    print(f"run-batch: {count} requests answered into {args.output_file}", file=sys.stderr)
    return 0


def run(server: FakeOpenAIServer, served: set[str], input_file: str, out: Any) -> int | None:
    """Every line of ``input_file`` answered into ``out``, in order; how many (None: a bad line ended it)."""
    count = 0
    with open(input_file, encoding="utf-8") as source:
        for number, text in enumerate(source, 1):
            if not text.strip():
                continue
            request = _request(text)
            if request is None:
                print(f"run-batch: line {number} of {input_file} is not a batch request", file=sys.stderr)
                return None
            out.write(json.dumps(answer_line(server, request, served)) + "\n")
            count += 1
    return count


def _request(text: str) -> dict[str, Any] | None:
    """A batch input line, or None when it is not one (not JSON, or a field missing or of the wrong type)."""
    try:
        line = json.loads(text)
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
        return None
    if not all(isinstance(line.get(name), str) for name in ("custom_id", "method", "url")):
        return None
    return line


def answer_line(server: FakeOpenAIServer, request: dict[str, Any], served: set[str]) -> dict[str, Any]:
    """The output line of one input line (module doc)."""
    body = request["body"]
    if request["url"] == "/v1/embeddings":
        return _error_line(request, 400, "The model does not support Embeddings API")
    if request["url"] != CHAT_PATH:
        return _error_line(request, 400, f"URL {request['url']} was used. {SUPPORTED}")
    if body.get("model") not in served:
        return _error_line(request, 404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
    if body.get("stream"):
        return _error_line(request, 400, "Request must not be sent in stream mode")
    reply = server._respond(body)
    if reply.status != 200:
        return _error_line(request, reply.status, reply.content or f"HTTP {reply.status}")
    completion = server._completion(body, reply, request_key(body), 0)
    return {
        "id": f"vllm-{uuid.uuid4().hex}",
        "custom_id": request["custom_id"],
        "response": {"status_code": 200, "request_id": f"vllm-batch-{uuid.uuid4().hex}", "body": completion},
        "error": None,
    }


def _error_line(
    request: dict[str, Any], status: int, message: str, kind: str = "BadRequestError"
) -> dict[str, Any]:
    return {
        "id": f"vllm-{uuid.uuid4().hex}",
        "custom_id": request["custom_id"],
        "response": {"status_code": status, "request_id": f"vllm-batch-{uuid.uuid4().hex}", "body": None},
        "error": {"error": {"message": message, "type": kind, "param": None, "code": status}},
    }
