"""The batch file format that ``--batch-files`` writes and reads (:mod:`skillmix.pipelines.batch_files`):
the names of input and output files, an output file's lines, a file written whole or not at all.

An input file is OpenAI's batch input (``{"custom_id", "method", "url", "body"}`` a line, written by
:func:`skillmix.llm.batch.request_line`); its output is read in either form an engine writes: OpenAI's
output and error files (platform.openai.com/docs/api-reference/batch/request-output: ``response`` with
``status_code`` and ``body``, or ``response: null`` and an ``error``), and ``vllm run-batch``'s single
output file (vLLM's ``BatchRequestOutput``: ``response`` with a ``status_code`` and a null ``body`` when
the request failed, and its ``error`` as a string or an error object).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from skillmix.llm.batch import LineResult, parse_output_line

OUT_SUFFIX = ".out.jsonl"
FILE_NAME = re.compile(r"^(?P<stage>[a-z0-9_]+)-(?P<n>\d+)(?:\.out)?\.jsonl$")  # <stage>-<n>[.out].jsonl


def output_name(input_name: str) -> str:
    """``round1-1.jsonl`` -> ``round1-1.out.jsonl``."""
    return input_name[: -len(".jsonl")] + OUT_SUFFIX


def owns(output: str, input_file: str) -> bool:
    """Whether ``output`` answers ``input_file``: its output (``round1-1.out.jsonl`` for ``round1-1.jsonl``)
    or a shard's (``round1-1.<anything>.out.jsonl``)."""
    stem = input_file[: -len(".jsonl")]
    return output == stem + OUT_SUFFIX or output.startswith(stem + ".")


def answered(result: LineResult) -> bool:
    """An output line with an answer: taken from whichever file holds it."""
    return is_answer(result.status, result.body)


def is_answer(status: int | None, body: Any) -> bool:
    """Whether an output line's HTTP ``status`` and ``body`` are an answer (200 and a body)."""
    return status == 200 and isinstance(body, dict)


def read_output(path: Path) -> list[tuple[int, LineResult | str]]:
    """The lines of an output file (OpenAI's output and error files, ``vllm run-batch``'s output), split
    on ``\\n`` only, each read by :func:`skillmix.llm.batch.parse_output_line` (the batch API's reader):
    ``(line number, its result)``, or a bad line's reason."""
    return [
        (number, parse_output_line(raw))
        for number, raw in enumerate(path.read_bytes().split(b"\n"), 1)
        if raw.strip()
    ]


def file_order(item: tuple[str, Any]) -> tuple[str, int]:
    """A sort key of ``(file name, ...)``: by stage, then by ``n`` as a number (``-10`` after ``-9``)."""
    match = FILE_NAME.match(item[0])
    return (match["stage"], int(match["n"])) if match else (item[0], 0)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole or not at all (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
