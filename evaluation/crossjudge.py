"""A second judge on a share of an evaluation: how far one judge's grades, and the verdicts built on them,
depend on which model graded.

:func:`regrade` takes an evaluation folder (``skillmix eval``'s samples.jsonl and results.json) and a
second judge, and writes a folder of the same shape holding the chosen combinations only, graded by the
second judge: ``samples.jsonl``, ``results.json`` (scored by :func:`skillmix.evaluation.score.
score_samples`, so that everything that reads an evaluation reads it: ``eval compare``, the experiment's
paired contrasts) and ``agreement.json``.

* **Which combinations**: ``n`` per (setting, k), drawn with ``random.Random(f"{seed}:{setting}:{k}")``
  from the evaluation's combination ids in sorted order, so that every evaluation of one eval set (every
  model of an experiment) re-grades the same combinations and contrasts stay paired. Every generation of a
  chosen combination is re-graded.
* **The same rubric**: the rubric prompt of the evaluation's ``grader_format`` rendered from the catalog's
  skills, ``grader_runs`` runs at the first judge's temperature, ``max_tokens`` and seeds (``seed + run``),
  each parsed: the judge's rule of :func:`skillmix.grade_runs.grade_answer_runs` (the pipeline's and the
  inspect task's), voted and scored under the evaluation's own scoring rules. A
  generation the student failed, or the infrastructure stopped, keeps its status: no judge sees it.
* **Agreement** (``agreement.json``), by :func:`skillmix.review.agreement.agreement`: on the generations
  both judges graded, (a) each rubric point as the judge voted it (before the text checks of the scoring
  rules, which do not depend on the judge; a point no run parsed is not rated) and (b) the generation's
  Full Marks under the scoring rules; raw agreement and Cohen's kappa with 95% bootstrap intervals that
  resample generations (the k+3 points of one text are correlated).
* The requests go through the request cache of ``OUT/.skillmix/``: the same call again pays for nothing
  already answered, and a request that failed (after the client's retries) leaves its generation
  ``errored`` in the results, sent again by the next call.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from skillmix.evaluation.files import read_results, read_samples, write_text_atomic
from skillmix.evaluation.outputs import write_outputs
from skillmix.evaluation.score import errored_ids, groups, run_points, sample_class, score_samples

Log = Callable[[str], None]
AGREEMENT_FILE = "agreement.json"


def chosen(samples: list[dict[str, Any]], n: int, seed: int) -> set[str]:
    """The combination ids re-graded: ``n`` per (setting, k) (module docstring)."""
    ids: set[str] = set()
    for (setting, k), group in groups(samples).items():
        combos = sorted({s["combination"] for s in group})
        ids |= set(random.Random(f"{seed}:{setting}:{k}").sample(combos, min(n, len(combos))))
    return ids


def regrade(config: Any, judge: Any, folder: Path, out: Path, n: int, seed: int, log: Log = print) -> dict:
    """Re-grade ``n`` combinations per cell of the evaluation in ``folder`` with ``judge`` (a
    :class:`skillmix.llm.client.Endpoint`) into ``out``; ``config`` is the evaluation's
    :class:`skillmix.evaluation.config.EvalConfig` (catalog, prompts, rules, judge sampling, client).
    Returns the agreement record."""
    from skillmix.catalog import load_catalog
    from skillmix.dataset_folder.layout import CACHE_FILE
    from skillmix.llm.cache import RequestCache
    from skillmix.llm.client import LLMClient
    from skillmix.pipelines.driver import load_prices
    from skillmix.prompts import PromptSet

    results, samples = read_results(folder), read_samples(folder)
    ids = chosen(samples, n, seed)
    picked = [s for s in samples if s["combination"] in ids]
    catalog = load_catalog(config.catalog, topics=config.topics)
    prompts = PromptSet(config.template_dir)
    work = out / ".skillmix"
    work.mkdir(parents=True, exist_ok=True)
    client = LLMClient(judge, config.client, RequestCache(str(work / CACHE_FILE)), load_prices(config))
    graded = [s for s in picked if sample_class(s) == "ok"]
    log(
        f"cross-judge {judge.model}: {len(ids)} combinations, {len(graded)} generations x "
        f"{config.grader_runs} grader runs"
    )
    grades = asyncio.run(_grade_all(client, prompts, catalog, config, graded))
    first_judge = results["judge"].get("identity") or results["judge"].get("model")
    second_judge = judge.identity or judge.model
    second = [{**s, **grades.get(s["id"], {}), "judge": second_judge} for s in picked]
    rules = config.scoring_rules
    record = {
        "judges": {"first": first_judge, "second": second_judge},
        "combinations": len(ids),
        "per_cell": n,
        "seed": seed,
        **agreement_of(picked, second, config.grader_runs, rules),
    }
    protocol = {**results["protocol"], "cross_judge": {"n": n, "seed": seed, "of": str(folder)}}
    regraded = {
        **{key: results[key] for key in ("run_id", "created", "student")},
        "judge": {"model": judge.model, "base_url": judge.base_url, "identity": second_judge},
        "protocol": protocol,
        "results": score_samples(second, config.grader_runs, config.generations, rules),
        "errored": errored_ids(second),
    }
    write_outputs(out, second, regraded)
    write_text_atomic(out / AGREEMENT_FILE, json.dumps(record, indent=2))
    return record


async def _grade_all(client: Any, prompts: Any, catalog: Any, config: Any, samples: list) -> dict[str, dict]:
    done = await asyncio.gather(*(_grade(client, prompts, catalog, config, s) for s in samples))
    return {s["id"]: fields for s, fields in zip(samples, done, strict=True)}


async def _grade(client: Any, prompts: Any, catalog: Any, config: Any, sample: dict) -> dict[str, Any]:
    """The generation's grader fields: the shared rule (:func:`skillmix.grade_runs.grade_answer_runs`),
    sent through skillmix's client."""
    from skillmix.grade_runs import grade_answer_runs

    settings = config.judge

    async def send(messages: list[dict[str, str]], seed: int | None) -> tuple[str | None, str, str | None]:
        c = await client.complete(messages, settings.temperature, settings.max_tokens, seed)
        return c.text, c.status, c.error

    skills = [catalog.skill(name).to_dict() for name in sample["skills"]]
    return await grade_answer_runs(
        send,
        prompts,
        skills,
        sample["topic"],
        sample["answer"],
        config.grader_format,
        config.grader_runs,
        settings.seed,
    )


def agreement_of(first: list[dict], second: list[dict], runs: int, rules: Any) -> dict[str, Any]:
    """The two judges' agreement on the same generations (module docstring): ``points`` and
    ``full_marks``, each :func:`skillmix.review.agreement.agreement`'s record."""
    from skillmix.metrics import majority_vote
    from skillmix.review.agreement import agreement

    unrated = replace(rules, unparseable="drop")  # a run that did not parse is not rated (no vote)
    by_id = {s["id"]: s for s in second}
    a_points, b_points, point_records, a_full, b_full, full_records = [], [], [], [], [], []
    for one in first:
        two = by_id.get(one["id"])
        if two is None or sample_class(one) != "ok" or sample_class(two) != "ok":
            continue
        votes = [majority_vote(run_points(s, runs, unrated)) for s in (one, two)]
        a_points += list(votes[0])
        b_points += list(votes[1])
        point_records += [one["id"]] * len(votes[0])
        full = [_full_marks(s, runs, rules) for s in (one, two)]
        a_full.append(full[0])
        b_full.append(full[1])
        full_records.append(one["id"])
    return {
        "points": agreement(a_points, b_points, records=point_records),
        "full_marks": agreement(a_full, b_full, records=full_records),
        "method": "raw agreement and Cohen's kappa; 95% percentile bootstrap intervals resampling "
        "generations (skillmix.review.agreement)",
    }


def _full_marks(sample: dict[str, Any], runs: int, rules: Any) -> float:
    """The generation's Full Marks under the scoring rules, NaN when no run of it parsed and the rules
    leave such a generation out."""
    from skillmix.metrics import score

    points = run_points(sample, runs, rules)
    if np.isnan(points).all():
        return float("nan")
    return score(points, int(sample["k"]), rules, sample.get("answer"), sample["skills"])["full_marks"]
