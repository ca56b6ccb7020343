"""Between the inspect_ai task (:mod:`skillmix.evaluation.inspect_task`) and ``skillmix eval``'s folders:
what a generation of the task records, how it is scored, and ``skillmix eval import-inspect LOG OUT``.

Nothing here imports inspect_ai at import time (the extra may be absent); :func:`import_inspect` reads the
log with inspect's own :func:`inspect_ai.log.read_eval_log` when it runs.

Each epoch of a sample is one generation of one combination. Its record is a line of ``samples.jsonl``
(:func:`skillmix.evaluation.run.sample_record`'s keys that scoring reads), built by the task's solver and
scorer and kept whole in the epoch's score metadata. The reduced score of a sample keeps the first epoch's
metadata only, so the importer reads every epoch's own score (``EvalSample.scores``), never the reduction.
An epoch that ended in an error (a request that failed after inspect's retries) has no score: it becomes an
``api_error`` generation, **errored** under :mod:`skillmix.statuses` (left out, counted and listed), as in
``skillmix eval``; an epoch the log does not hold (a cancelled run) is **not run**.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.evaluation.score import errored_ids, run_points, score_samples
from skillmix.metrics import apply_text_checks, majority_vote, score
from skillmix.rules import ScoringRules

TASK = "skillmix/skill_mix"  # the entry point's name, then the @task's
SCORER = "skill_mix_judge"
STORE = "skillmix"  # the key of the generation's record in the sample's store
GROUP = "group"  # the sample metadata key the metrics are grouped by: "<setting> k=<k>"
TASK_METADATA = "skillmix_protocol"  # the task metadata key of results.json's protocol
RECORD_KEYS = ("id", "combination", "generation", "setting", "k", "skills", "categories", "topic")


def combination_sample_id(setting: str, combination: str) -> str:
    return f"{setting}:{combination}"


def start_record(meta: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The record of generation ``epoch - 1`` of the sample whose metadata is ``meta``, nothing sent yet;
    its id is the one ``skillmix eval`` gives the same generation (:func:`skillmix.evaluation.run.expand`)."""
    generation = epoch - 1
    return {
        "id": f"{meta['setting']}:{meta['combination']}:g{generation}",
        **{key: meta.get(key) for key in RECORD_KEYS[1:] if key != "generation"},
        "generation": generation,
        **{f"round{i}{part}": None for i in (1, 2) for part in ("", "_status", "_error")},
        "answer": None,
        "grader_outputs": [],
        "grader_points": [],
        "grader_status": [],
        "grader_errors": [],
    }


def reply_status(stop_reason: str, text: str | None) -> tuple[str, str | None]:
    """A reply's status in :mod:`skillmix.statuses` from inspect's stop reason, as skillmix's client gives
    it: the provider's filter is ``refused``; a prompt longer than the context (inspect turns that 400 into
    ``model_length``) ``invalid_request``; an empty reply ``api_error`` (the client retries it, then errors);
    a reply cut at ``max_tokens`` ``truncated``."""
    if stop_reason == "content_filter":  # inspect gives the refusal's text as the completion
        return "refused", (text or "").strip() or "content filter"
    if stop_reason == "model_length":
        return "invalid_request", "the request exceeds the model's context (model_length)"
    if not text or not text.strip():
        return "api_error", "empty completion"
    if stop_reason == "max_tokens":
        return "truncated", "the reply was cut at max_tokens (finish reason: length)"
    return "ok", None


def generation_value(
    record: dict[str, Any], runs: int, rules: ScoringRules
) -> tuple[dict[str, float], list[int] | None]:
    """The three metrics of one generation (:func:`skillmix.metrics.score` of its grader runs, as
    :func:`skillmix.evaluation.score.run_points` gives them: 0 for a failed generation, NaN, inspect's
    "unscored", for one the rules leave out) and its decided points (None when not decided)."""
    points = run_points(record, runs, rules)
    value = score(points, record["k"], rules, record.get("answer"), record["skills"])
    k, answer = record["k"], record.get("answer")
    decided = apply_text_checks(majority_vote(points), k, answer, record["skills"], rules)
    return value, (None if any(math.isnan(p) for p in decided) else [int(p) for p in decided])


def epoch_records(log: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """A record per (sample, epoch) the task was to run: scored, errored, or not run; and the samples the
    log holds no epoch of (their combination cannot be named: they are reported, not scored)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for sample in log.samples or []:
        meta[str(sample.id)] = sample.metadata
        found[(str(sample.id), sample.epoch)] = epoch_record(sample)
    epochs = log.eval.config.epochs or 1
    for sample_id in meta:
        for epoch in range(1, epochs + 1):
            if (sample_id, epoch) not in found:
                record = start_record(meta[sample_id], epoch)
                record["round1_status"], record["round1_error"] = "interrupted", "not in the inspect log"
                found[(sample_id, epoch)] = record
    missing = [str(i) for i in (log.eval.dataset.sample_ids or []) if str(i) not in meta]
    return [found[key] for key in sorted(found, key=lambda key: (key[1], key[0]))], missing


def epoch_record(sample: Any) -> dict[str, Any]:
    """One epoch's record: its score's metadata, or, for an epoch that errored, what it got to with the
    stage that failed marked ``api_error``."""
    scored = (sample.scores or {}).get(SCORER)
    if sample.error is None and scored is not None and scored.metadata:
        return dict(scored.metadata)
    record = dict((sample.store or {}).get(STORE) or start_record(sample.metadata, sample.epoch))
    message = sample.error.message if sample.error is not None else "no score in the inspect log"
    stage = next((s for s in ("round1", "round2") if record.get(f"{s}_status") is None), None)
    if stage is None:
        record["grader_status"] = [*(record.get("grader_status") or []), "api_error"]
        record["grader_errors"] = [*(record.get("grader_errors") or []), message]
    else:
        record[f"{stage}_status"], record[f"{stage}_error"] = "api_error", message
    return record


def read_log(path: Path) -> Any:
    """The inspect log at ``path``; ConfigError (one line) when the extra is absent, the file does not read
    or is not a log of the Skill-Mix task."""
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise ConfigError("import-inspect needs inspect_ai: pip install 'skillmix[inspect]'") from None
    if not path.is_file():
        raise ConfigError(f"{path}: no such inspect log")
    try:
        log = read_eval_log(str(path))
    except Exception as exc:  # inspect raises many types for a file it cannot read
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path} is not an inspect log ({reason})") from None
    if TASK_METADATA not in (log.eval.metadata or {}):
        raise ConfigError(f"{path} is not a log of {TASK} (its task: {log.eval.task}; no skillmix protocol)")
    return log


def model_entry(name: str, base_url: str | None) -> dict[str, Any]:
    """A model of the log as results.json names it: without inspect's provider (``openai/gpt-4o`` is
    ``gpt-4o``, ``openai-api/SERVICE/NAME`` is ``NAME``), so that it pairs with ``skillmix eval``'s."""
    provider, _, model = name.partition("/")
    if provider == "openai-api":
        model = model.partition("/")[2]
    return {"model": model or name, "base_url": base_url, "identity": model or name, "inspect_model": name}


def import_inspect(path: Path, out: Path) -> dict[str, Any]:
    """``skillmix eval import-inspect LOG OUT``: an evaluation folder (samples.jsonl, results.json,
    results.md, plots/) from an inspect log of :data:`TASK`; returns what results.json holds."""
    from skillmix.evaluation.outputs import write_outputs

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: import-inspect writes a new evaluation folder")
    log = read_log(path)
    protocol = dict(log.eval.metadata[TASK_METADATA])
    protocol["generations"] = log.eval.config.epochs or protocol["generations"]  # `--epochs N` wins
    rules = ScoringRules.from_config(protocol, f"{path}: task metadata")
    samples, missing = epoch_records(log)
    roles = log.eval.model_roles or {}
    grader = roles.get("grader")
    grader = grader[0] if isinstance(grader, list) else grader
    results = {
        "run_id": log.eval.run_id[:12],
        "created": log.eval.created,
        "student": {**model_entry(log.eval.model, log.eval.model_base_url), "kind": "api", "revision": None},
        "judge": model_entry(grader.model, grader.base_url) if grader is not None else {"model": None},
        "protocol": protocol,
        "results": score_samples(samples, protocol["grader_runs"], protocol["generations"], rules),
        "errored": errored_ids(samples),
        "cost_usd": None,
        "source": {
            "inspect_log": str(path),
            "status": log.status,
            "not_in_log": missing,
            "inspect_version": log.eval.packages.get("inspect_ai"),
            "epochs_reducer": log.eval.config.epochs_reducer,
        },
    }
    write_outputs(out, samples, results)
    return results
