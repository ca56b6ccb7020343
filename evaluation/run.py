"""One evaluation: the checks, the student, the dataset pipeline over every generation, the outputs.

:func:`run_eval` is what ``skillmix eval`` and ``make eval`` call. It is the dataset pipeline of
:mod:`skillmix.pipelines.dataset` with the student in the teacher's seat: the same tasks, decision step,
client, request cache, retries, limits, spending cap and costs. Each combination becomes ``generations`` rows
(``<setting>:<combination>:g<index>``), each generation with its own seed; no row is filtered.

Every check that can fail (settings and k, the eval set, the judge, the student, prices under a cap, the
servers answering) comes before anything is written. The request cache lives in ``OUT/.skillmix/``: the
same command again, after a crash or an interruption, pays for nothing already answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skillmix.catalog import load_catalog
from skillmix.config import ConfigError
from skillmix.evaluation.config import EvalConfig
from skillmix.evaluation.outputs import write_outputs
from skillmix.evaluation.roles import Student, prepare_student
from skillmix.evaluation.score import score_samples
from skillmix.evaluation.sets import Sets, eval_sets
from skillmix.llm.prices import PriceTable
from skillmix.pipelines.budget import RowCosts, affordable
from skillmix.pipelines.dataset import ResolvedModel, check_reachable, run_pipeline
from skillmix.pipelines.folder import OutputFolder
from skillmix.pipelines.interrupt import guarded
from skillmix.pipelines.run import check_priced, load_prices
from skillmix.prompts import PromptSet

Log = Callable[[str], None]
EVAL_FILE = "eval.json"  # in OUT/.skillmix: the fingerprint of the evaluation the folder holds


def run_eval(config: EvalConfig, out: str | Path, log: Log = print) -> dict[str, Any]:
    """Evaluate the student of ``config`` into the folder ``out``; returns what ``results.json`` holds."""
    started = time.time()
    catalog = load_catalog(config.catalog, topics=config.topics)
    split = catalog.split(config.split_seed)
    sets = eval_sets(catalog, split, config.setting, config.k, config.n, config.seed, config.eval_set)
    prices = load_prices(config)
    student = prepare_student(config.student)  # refuses what cannot be loaded or reached, starts nothing
    judge = _judge(config)
    for model in (student.resolved, judge):
        if model is not None:
            check_priced(config, model, prices)
            check_reachable(model)
    folder = _claim(Path(out), config.fingerprint(student.identity, judge.identity or judge.model))
    pipeline_config = config.pipeline_config()
    rows = expand(sets, config.generations)
    combos = len(rows) // config.generations
    log(f"Evaluating {student.describe()}: {combos} combinations x {config.generations} generations; "
        f"judge {judge.describe()}")  # fmt: skip
    with contextlib.ExitStack() as stack:
        guard = stack.enter_context(guarded(folder.work))
        served = stack.enter_context(student.serve(folder.work, log))
        models = (served, judge)
        worst, not_started = _under_cap(config, pipeline_config, models, prices, rows, sets, folder)
        started_rows = rows[: len(rows) - len(not_started)]
        produced = run_pipeline(pipeline_config, started_rows, models, folder.work, worst, guard)
    prompts = PromptSet(config.template_dir)
    by_name = {skill.name: skill for skill in catalog.skills}
    samples = [sample_record(row, prompts, by_name, student, judge) for row in produced + not_started]
    results = {
        "run_id": uuid.uuid4().hex[:12],
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "student": student.describe_dict(),
        "judge": {
            "model": judge.model,
            "base_url": judge.base_url,
            "identity": judge.identity or judge.model,
        },
        "protocol": {**config.protocol(), "prompt_hashes": prompts.hashes(), "split": split.hash},
        "results": score_samples(
            samples, config.grader_runs, config.generations, config.length_override, config.name_penalty
        ),
        "cost_usd": round(sum(_usd(sample) for sample in samples), 6),
        "wall_seconds": round(time.time() - started, 1),
    }
    write_outputs(folder.path, samples, results)
    return results


def expand(sets: Sets, generations: int) -> list[dict[str, Any]]:
    """One pipeline row per generation, interleaved over (setting, k) so that a cap stops them alike."""
    groups = []
    for (setting, _k), combos in sets.items():
        rows = []
        for combo in combos:
            for g in range(generations):
                rows.append({**combo.to_dict(), "id": f"{setting}:{combo.id}:g{g}", "combination": combo.id,
                             "setting": setting, "generation": g})  # fmt: skip
        groups.append(rows)
    longest = max((len(g) for g in groups), default=0)
    return [group[i] for i in range(longest) for group in groups if i < len(group)]


def sample_record(
    row: dict[str, Any], prompts: PromptSet, skills: dict[str, Any], student: Student, judge: ResolvedModel
) -> dict[str, Any]:
    """One line of ``samples.jsonl``: enough to re-score the generation without a request."""
    combo_skills = [skills[name] for name in row["skills"]]
    conversation = prompts.conversation(combo_skills, row["topic"], row.get("round1"))
    if row.get("round2") is not None:
        conversation = [*conversation, {"role": "assistant", "content": row["round2"]}]
    keys = ("id", "setting", "k", "combination", "generation", "skills", "categories", "topic", "answer",
            "round1_status", "round1_error", "round2_status", "round2_error", "grader_outputs",
            "grader_points", "grader_status", "grader_errors", "points", "full_marks", "all_skills",
            "skill_fraction", "sentences", "named_skills", "status", "failure_reason", "round1_usage",
            "round2_usage", "grader_usage")  # fmt: skip
    record = {key: row.get(key) for key in keys}
    record.update(conversation=conversation, student=student.identity, judge=judge.identity or judge.model)
    return record


def _judge(config: EvalConfig) -> ResolvedModel:
    settings = config.judge
    assert settings.model, "build_eval_config refuses an unnamed judge"
    base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if base_url is None and not os.environ.get("OPENAI_API_KEY"):
        raise ConfigError(
            "the judge uses api.openai.com but OPENAI_API_KEY is not set (or give --judge-base-url)"
        )
    return ResolvedModel("judge", settings.model, base_url)


def _claim(out: Path, fingerprint: str) -> OutputFolder:
    """Take ``out``: new, empty, or holding this same evaluation (then resume from its cache)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a folder")
    folder = OutputFolder(out)
    eval_file = folder.work / EVAL_FILE
    if not eval_file.is_file() and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} is not empty and holds no skillmix evaluation")
    if eval_file.is_file():
        try:
            held = json.loads(eval_file.read_text()).get("fingerprint")
        except ValueError:
            raise ConfigError(f"{eval_file} does not parse; move it aside to start afresh") from None
        if held != fingerprint:
            raise ConfigError(
                f"output folder {out} holds another evaluation (another student, judge or protocol); "
                "choose another --out or remove it"
            )
    folder.work.mkdir(parents=True, exist_ok=True)
    folder.lock()
    folder.check_state()
    tmp = eval_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint}))
    tmp.replace(eval_file)
    return folder


def _under_cap(
    config: EvalConfig, pipeline_config: Any, models: tuple[ResolvedModel, ...], prices: PriceTable,
    rows: list[dict[str, Any]], sets: Sets, folder: OutputFolder,
) -> tuple[dict[str, dict[str, float]] | None, list[dict[str, Any]]]:  # fmt: skip
    """Under ``--max-usd``: each row's worst case, and the rows (at the end) the cap does not let start."""
    cap = config.client.max_usd
    if cap is None:
        return None, []
    from skillmix.llm.cache import RequestCache
    from skillmix.pipelines.output import CACHE_FILE

    costs = RowCosts(pipeline_config, models, prices)
    by_combination = {combo.id: costs.worst(combo) for drawn in sets.values() for combo in drawn}
    worst = {row["id"]: by_combination[row["combination"]] for row in rows}  # as its combination
    cache = RequestCache(folder.work / CACHE_FILE)
    try:
        available = cap - cache.committed_usd()
    finally:
        cache.close()
    count = affordable([worst[row["id"]].total for row in rows], available)
    reason = f"budget: not started, the spending limit ${cap:.2f} does not cover its worst case"
    rest = [{**row, "round1_status": "budget", "round1_error": reason, "status": "budget",
             "failure_reason": reason} for row in rows[count:]]  # fmt: skip
    return {row["id"]: worst[row["id"]].to_dict() for row in rows[:count]}, rest


def _usd(sample: dict[str, Any]) -> float:
    entries = [sample.get("round1_usage"), sample.get("round2_usage"), *(sample.get("grader_usage") or [])]
    return sum((entry or {}).get("usd") or 0.0 for entry in entries)
