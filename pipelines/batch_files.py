"""Batch files for any engine (``--batch-files DIR``): each stage's requests written as OpenAI batch JSONL
files, run outside skillmix by whatever reads the format, and imported into the request cache.

**How a run goes.** The pipeline runs as in batch mode (:mod:`skillmix.pipelines.batches`): a batched
role's request that the cache cannot answer is recorded as a line (state ``wanted``, with the stage that
asks). Then, instead of uploading the lines to a batch API, :func:`run_batch_files` writes them into
``DIR/<stage>-<n>.jsonl`` (one model per file, within OpenAI's limits of one batch file) and stops the run
with :class:`OutsideWork` (exit code 75, sysexits.h's ``EX_TEMPFAIL``) and the commands to run. Each input
file ``DIR/<stage>-<n>.jsonl`` expects its output as ``DIR/<stage>-<n>.out.jsonl``; ``vllm run-batch -i
IN -o OUT --model M`` writes exactly that (a ``response`` with its ``status_code`` and ``body``, or an
``error``, a line). The same command again imports every output file in ``DIR`` (matched by
``custom_id``, which is the request's cache key: an imported answer is the answer a direct request would
have stored), runs the pipeline one stage further and writes the next files, until no line is wanted.

**Import.** Each line is taken once: an answer for a line already answered adds nothing, a line of no
request of this run is counted and left, a line that is not JSON is reported with its number. An output
file that lacks lines of its input (a run killed half way, a file cut short) is reported, and the missing
lines are written again into the next file (not run: the try is counted). Each line is settled by the
rule batch mode follows (:mod:`skillmix.pipelines.batch_settle`), priced from the price table at the direct
price (there is no provider bill), from whichever output file holds it; a failure counts only from the
output of the file that holds the line now (or of a shard of it, ``<stage>-<n>.<anything>.out.jsonl``).

The file format (names, output lines in OpenAI's and vLLM's forms) is :mod:`skillmix.llm.batch_files`.

**The cap**, row by row as in batch mode: under ``--max-usd`` a row's first line written reserves the row's
remaining worst case (``batchrow:<row>``: all its stages from that line's on, prompts at the byte bound,
replies at ``max_tokens``, at the direct price), its later lines draw on it, and a line whose row the cap
cannot cover is not written (``refused``; its row ends ``budget``), so every started row can finish. Each
run of the command considers the refused lines again at its own cap (the rows answers left room for, or a
higher ``--max-usd``); what rows did not use is given back once no file waits for its output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.dataset_folder.layout import CACHE_FILE
from skillmix.llm.batch import MAX_REQUESTS, chunks, request_line
from skillmix.llm.batch_files import (
    FILE_NAME,
    OUT_SUFFIX,
    answered,
    file_order,
    output_name,
    owns,
    read_output,
    write_atomic,
)
from skillmix.llm.cache import RequestCache
from skillmix.llm.prices import PriceTable, token_bound
from skillmix.pipelines.batch_settle import LineSettler, release_rows, want_again
from skillmix.pipelines.batches import run_tag

EXIT_CODE = 75  # the same as skillmix.errors.EXIT_OUTSIDE_WORK
MARKER = "skillmix-batch-files.json"  # the run that owns DIR (its run tag and output folder)
FOLDER_FILE = "batch_files"  # in the work folder: where the run's batch files are (DIR)

Log = Callable[[str], None]


class OutsideWork(Exception):
    """The run stopped for work done outside it: the batch files to run, then the same command again."""

    exit_code = EXIT_CODE


def check_file_role(model: Any) -> None:
    """A role whose requests go to batch files must be a remote chat model (refused by name otherwise)."""
    if model.local:
        raise ConfigError(
            f"--batch-files: the {model.role} {model.describe()} runs here, its requests are not written to "
            "files; batch only the other role (--judge-batch --batch-files DIR)"
        )
    if model.mode == "completion":
        raise ConfigError(
            f"--batch-files: the {model.role} is in completion mode (a base model), and batch files carry "
            "only /v1/chat/completions lines (all that vllm run-batch reads)"
        )


def plan_line(config: Any, models: tuple[Any, ...]) -> str:
    """The plan's line for a run with batch files (``skillmix dataset --dry-run`` and every run's start)."""
    roles = [m.role for m in models if config.settings_of(m.role).batch]
    return (
        f"  batch files: the {' and '.join(roles)} requests are written to {config.batch_files} as OpenAI "
        f"batch JSONL (<stage>-<n>.jsonl, one model per file, up to {MAX_REQUESTS:,} lines);\n"
        f"    the run stops after each stage with exit code {EXIT_CODE} until each file's "
        f"<stage>-<n>{OUT_SUFFIX} is there; priced as direct requests from the price table (no provider bill)"
    )


def files_note(config: Any) -> str:
    """The experiment plan's note for a stage with batch files (``skillmix experiment run FILE --plan``)."""
    roles = [role for role in ("generator", "judge") if getattr(config, role).batch]
    named = " and ".join("judge" if role == "judge" else "teacher/student" for role in roles)
    return (
        f"the {named} requests to batch files in {config.batch_files} (exit code {EXIT_CODE} after each "
        "stage; priced as direct)"
    )


def run_batch_files(
    driver: Any, rows: list[dict[str, Any]], worst: dict[str, dict[str, float]] | None = None
) -> list[dict[str, Any]]:
    """The rows of ``driver`` through the pipeline with batch files (module doc): their rows when every
    request is answered, else :class:`OutsideWork` once the files to run are written. ``worst``: each
    row's worst case by stage under a cap (its id's), which its first line written reserves."""
    from skillmix.pipelines.dataset import run_pipeline

    config = driver.config
    for model in driver.models:
        if config.settings_of(model.role).batch:
            check_file_role(model)
    files = BatchFiles(
        driver.folder.work, Path(config.batch_files), driver.prices, config.client.max_usd,
        config.client.max_retries, driver.log,
    )  # fmt: skip
    try:
        in_flight = files.cache.batch_lines("state IN ('uploading', 'submitted')")
        if in_flight:  # paid work at a provider: sent again into files, it would be paid twice
            raise ConfigError(
                f"--batch-files: {driver.folder.path} has {len(in_flight)} requests in batches at a provider "
                "(sent with --teacher-batch/--judge-batch): run the same command without --batch-files to "
                f"collect them (after skillmix batches cancel {driver.folder.path}, to stop waiting for them)"
            )
        files.claim(driver.folder.path)
        files.import_outputs()
        again = want_again(files.cache, ("refused",))
        if again:
            driver.log(f"{again} requests the cap refused before are considered again (under the cap now)")
        while True:
            produced = run_pipeline(config, rows, driver.models, driver.folder.work, worst, driver.guard)
            wanted = files.wanted()
            written = files.write(wanted)
            waiting = files.waiting()
            if waiting:
                raise OutsideWork(files.instructions(written, waiting))
            if not wanted:  # else the cap refused every line wanted: once more, those rows end budget
                release_rows(files.cache)
                driver.batch_stats = files.stats
                return produced
    finally:
        files.close()


def unwritten(work: Path, log: Log) -> None:
    """A batched run through a batch API (no ``--batch-files``): the lines an earlier run wrote to batch
    files and never imported go back to ``wanted``, sent through the API now (said in one line)."""
    cache = RequestCache(work / CACHE_FILE)
    try:
        written = cache.batch_lines("state = 'written'")
        if written:
            folder = (
                (work / FOLDER_FILE).read_text(encoding="utf-8").strip()
                if (work / FOLDER_FILE).is_file()
                else "?"
            )
            with cache.transaction():  # their rows' reservations given back: the batch API reserves anew
                for rid in {line["reservation"] for line in written}:  # (each line's row from its stage on)
                    cache.release(rid)
                cache.set_lines([line["key"] for line in written], "wanted")
            log(
                f"{len(written)} requests written to batch files in {folder} and never imported are sent "
                "through the batch API instead (outputs put there later are not read)"
            )
    finally:
        cache.close()


class BatchFiles:
    """The batch files of one run's folder ``work`` in ``folder`` (module doc)."""

    def __init__(
        self, work: Path, folder: Path, prices: PriceTable, max_usd: float | None, max_retries: int, log: Log
    ) -> None:
        self.work, self.folder, self.prices, self.cap = work, folder, prices, max_usd
        self.max_retries, self.log = max_retries, log
        self.cache = RequestCache(work / CACHE_FILE)
        self.stats = dict.fromkeys(
            ("imported", "written", "files", "retried", "failed", "refused", "invalid"), 0
        )
        self.settler = LineSettler(
            self.cache, prices, max_retries, self.stats, batch_price=False, unit="batch files"
        )

    def close(self) -> None:
        self.cache.close()

    def claim(self, out: Path) -> None:
        """Take ``folder`` for this run (made if new); another run's batch files folder is refused."""
        tag = run_tag(self.work)
        (self.work / FOLDER_FILE).write_text(f"{self.folder.resolve()}\n", encoding="utf-8")
        marker = self.folder / MARKER
        if marker.is_file():
            owner = json.loads(marker.read_text(encoding="utf-8"))
            if owner.get("run_tag") != tag:
                raise ConfigError(
                    f"--batch-files {self.folder} holds the batch files of another run (of "
                    f"{owner.get('out')}): give each run its own folder"
                )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, json.dumps({"run_tag": tag, "out": str(out)}).encode() + b"\n")

    # ------------------------------------------------------------------ import

    def import_outputs(self) -> None:
        """Every output file in the folder into the cache (module doc: each line once, bad lines and
        missing lines reported, the missing ones written again)."""
        pending = {line["key"]: line for line in self.cache.batch_lines("state = 'written'")}
        counts = {"imported": 0, "again": 0, "unknown": 0}
        bad: list[str] = []
        for path in sorted(self.folder.glob(f"*{OUT_SUFFIX}")):
            for number, result in read_output(path):
                if isinstance(result, str):
                    bad.append(f"{path.name} line {number}: {result}")
                    continue
                line = pending.get(result.custom_id)
                if line is None:
                    known = self.cache.batch_line(result.custom_id) is not None
                    counts["again" if known else "unknown"] += 1
                    continue
                if not answered(result) and not owns(path.name, line["input_file"]):
                    counts["again"] += 1  # a failure of an earlier file, counted then: the line is elsewhere
                    continue
                message = result.message or result.code
                self.settler.settle(pending.pop(result.custom_id), result.status, result.body, message)
                counts["imported"] += 1
        self.stats["imported"] += counts["imported"]
        missing = self._missing(pending)
        if counts["imported"] or counts["again"] or counts["unknown"] or bad or missing:
            self.log(_import_report(counts, bad, missing))

    def _missing(self, pending: dict[str, dict[str, Any]]) -> dict[str, int]:
        """The lines still waiting whose input file has its output file: missing from it, written again."""
        by_file: dict[str, list[dict[str, Any]]] = {}
        for line in pending.values():
            by_file.setdefault(line["input_file"], []).append(line)
        missing = {}
        for name, lines in sorted(by_file.items()):
            if (self.folder / output_name(name)).is_file():
                missing[name] = len(lines)
                for line in lines:  # not run: written again, the try counted
                    self.settler.again(line, f"missing from {output_name(name)}")
        return missing

    # ------------------------------------------------------------------ write

    def wanted(self) -> list[dict[str, Any]]:
        return self.cache.batch_lines("state = 'wanted'")

    def write(self, wanted: list[dict[str, Any]] | None = None) -> list[tuple[str, str, int]]:
        """The ``wanted`` lines (default: every line wanted now) into new input files, one stage and one
        model a file, within the limits; returns ``(file name, model, lines)`` of each file written."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for line in self.wanted() if wanted is None else wanted:
            groups.setdefault((line["stage"] or "requests", line["endpoint"]["model"]), []).append(line)
        written: list[tuple[str, str, int]] = []
        last = self._last_numbers() if groups else {}
        for (stage, model), lines in sorted(groups.items()):
            affordable = self._reserve(lines)
            encoded = [(line["key"], request_line(line["key"], line["body"])) for line in affordable]
            for part in chunks(encoded):
                last[stage] = last.get(stage, 0) + 1
                name = f"{stage}-{last[stage]}.jsonl"
                write_atomic(self.folder / name, b"".join(data for _, data in part))
                self.cache.set_lines([key for key, _ in part], "written", input_file=name)
                written.append((name, model, len(part)))
        self.stats["files"] += len(written)
        self.stats["written"] += sum(count for *_, count in written)
        return written

    def _worst(self, line: dict[str, Any]) -> float:
        """A line's worst case at the direct price (batch files have no provider bill, no discount)."""
        body = line["body"]
        prompt = token_bound(body.get("messages") or [])
        return self.prices.worst_case(line["endpoint"]["model"], prompt, int(body.get("max_tokens") or 0))

    def _reserve(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The lines the cap covers; the others end ``refused`` (module doc: a row's first line written
        reserves the row's remaining worst case, ``batchrow:<row>``, at the direct price, and its later
        lines draw on it; a line of no row, ``batch:<key>``, reserves its own worst case)."""
        if self.cap is None:
            return lines
        with self.cache.transaction():
            for line in lines:
                if line["reservation"] == f"batch:{line['key']}":  # priced here at the direct price
                    line["worst_usd"] = line["reserve_usd"] = self._worst(line)
                    self.cache.set_lines([line["key"]], line["state"], worst_usd=line["worst_usd"],
                                         reserve_usd=line["reserve_usd"])  # fmt: skip
        held = self.cache.reserve_many(
            [(line["reservation"], float(line["reserve_usd"])) for line in lines], self.cap
        )
        kept = [line for line in lines if line["reservation"] in held]
        refused = [line["key"] for line in lines if line["reservation"] not in held]
        if refused:
            error = (
                f"spending limit of ${self.cap:.2f}: its row's worst case does not fit; not written to a file"
            )
            self.cache.set_lines(refused, "refused", error=error)
            self.stats["refused"] += len(refused)
        return kept

    def _last_numbers(self) -> dict[str, int]:
        """The highest ``n`` of each stage among the names this run wrote and those the folder holds: a
        name is never used twice, so an output file always answers the input file of its name."""
        names = {line["input_file"] for line in self.cache.batch_lines("input_file LIKE '%.jsonl'")}
        last: dict[str, int] = {}
        for name in names | {path.name for path in self.folder.iterdir()}:
            match = FILE_NAME.match(name or "")
            if match:
                last[match["stage"]] = max(last.get(match["stage"], 0), int(match["n"]))
        return last

    # ------------------------------------------------------------------ what is left

    def waiting(self) -> list[tuple[str, str, int]]:
        """``(file name, model, lines)`` of every input file with lines still waiting for its output."""
        files: dict[str, tuple[str, int]] = {}
        for line in self.cache.batch_lines("state = 'written'"):
            model, count = files.get(line["input_file"], (line["endpoint"]["model"], 0))
            files[line["input_file"]] = (model, count + 1)
        return [(name, model, count) for name, (model, count) in sorted(files.items(), key=file_order)]

    def instructions(self, written: list[tuple[str, str, int]], waiting: list[tuple[str, str, int]]) -> str:
        """What :class:`OutsideWork` says: the files to run, each as a ``vllm run-batch`` command."""
        new = {name for name, *_ in written}
        lines = [
            f"waiting for batch files: {_count(len(waiting), 'input file')} in {self.folder} without "
            f"output ({len(new)} written now). Run each with an engine that reads OpenAI batch files (on any "
            "machine; the output beside its input, named <stage>-<n>.out.jsonl), then run the same command "
            "again:"
        ]
        for name, model, count in waiting:
            note = "written now" if name in new else "written earlier, no output yet"
            lines.append(
                f"  vllm run-batch -i {self.folder / name} -o {self.folder / output_name(name)} "
                f"--model {model}   # {count} requests, {note}"
            )
        lines.append(f"(exit code {EXIT_CODE}: not an error; every request is recorded, nothing is lost)")
        return "\n".join(lines)


def _import_report(counts: dict[str, int], bad: list[str], missing: dict[str, int]) -> str:
    parts = [f"batch files: {_count(counts['imported'], 'answer')} imported"]
    if counts["again"]:
        parts.append(f"{counts['again']} already imported (added nothing)")
    if counts["unknown"]:
        parts.append(f"{counts['unknown']} not of this run's requests (left)")
    text = ", ".join(parts)
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        text += f"\n  {_count(len(bad), 'bad line')}: {shown}"
    for name, count in missing.items():
        text += (
            f"\n  {output_name(name)} lacks {_count(count, 'line')} of {name} (cut short, or its run "
            "stopped): they are written again"
        )
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
