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
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skillmix.catalog import load_catalog
from skillmix.config import ConfigError
from skillmix.evaluation.config import EvalConfig, dataset_draw
from skillmix.evaluation.outputs import write_outputs
from skillmix.evaluation.roles import Student, prepare_student
from skillmix.evaluation.score import errored_ids, score_samples
from skillmix.evaluation.sets import Sets, eval_sets
from skillmix.llm.roles import ResolvedModel, resolve_judge
from skillmix.pipelines.driver import Driver, check_models, claim, interleave, load_prices, pipeline_row
from skillmix.pipelines.interrupt import guarded
from skillmix.pipelines.rows import to_record
from skillmix.pipelines.usage import row_usd
from skillmix.prompts import PromptSet
from skillmix.release.evalsets import exclusion_record
from skillmix.skills import content_hash
from skillmix.splits import Split

Log = Callable[[str], None]
# What a sample keeps of its row beyond the dataset record: enough to re-score it with no request.
SAMPLE_KEYS = (
    "combination",
    "generation",
    "round1_status",
    "round1_error",
    "round2_status",
    "round2_error",
    "round1_usage",
    "round2_usage",
    "grader_usage",
)


def run_eval(config: EvalConfig, out: str | Path, log: Log = print) -> dict[str, Any]:
    """Evaluate the student of ``config`` into the folder ``out``; returns what ``results.json`` holds."""
    started = time.time()
    drawn_sets = asked(config)
    sets = drawn_sets[2]
    drawn = seed_source(config, log)
    prices = load_prices(config)
    keyless = config.file_roles()  # roles whose requests go to batch files need no key
    student = prepare_student(config.student, keyless="student" in keyless)  # refuses, starts nothing
    judge = resolve_judge(config.judge, None, hint=" (or give --judge-base-url)", keyless="judge" in keyless)
    if student.resolved is None and config.batch_files is not None and config.student.batch:
        raise ConfigError(f"--batch-files: the student {student.describe()} runs here; batch only the judge "
                          "(--judge-batch --batch-files DIR)")  # fmt: skip
    check_models(config, [m for m in (student.resolved, judge) if m is not None], prices)
    fingerprint = config.fingerprint(student.identity, judge.identity or judge.model)
    folder = claim(out, "evaluation", fingerprint, config.model_dump())
    rows = expand(sets, config.generations)
    combos = len(rows) // config.generations
    log(
        f"Evaluating {student.describe()}: {combos} combinations x {config.generations} generations; "
        f"judge {judge.describe()}"
    )
    with contextlib.ExitStack() as stack:
        guard = stack.enter_context(guarded(folder.work))
        served = stack.enter_context(student.serve(folder.work, log))
        produced = Driver(config, (served, judge), prices, folder, guard, log).run(rows)
    hashes = PromptSet(config.template_dir).hashes()
    samples = [sample_record(row, (served, judge), hashes, student) for row in produced]
    results = {
        "run_id": uuid.uuid4().hex[:12],
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "student": student.describe_dict(),
        "judge": {
            "model": judge.model,
            "base_url": judge.base_url,
            "identity": judge.identity or judge.model,
        },
        "protocol": protocol_record(config, drawn_sets, drawn),
        "results": score_samples(samples, config.grader_runs, config.generations, config.scoring_rules),
        "errored": errored_ids(samples),
        "cost_usd": round(sum(row_usd(row) for row in produced), 6),
        "wall_seconds": round(time.time() - started, 1),
    }
    write_outputs(folder.path, samples, results)
    return results


def asked(config: EvalConfig) -> tuple[Split, frozenset[Any], Sets]:
    """The split, the dataset's draw left out (:func:`dataset_drawn`) and the combinations ``config``
    asks about: what ``skillmix eval`` and the inspect task (:mod:`skillmix.evaluation.inspect_task`)
    both evaluate."""
    catalog = load_catalog(config.catalog, topics=config.topics)
    split = catalog.split(config.split_seed)
    exclude = dataset_drawn(config)
    sets = eval_sets(
        catalog, split, config.setting, config.k, config.n, config.seed, config.eval_set, exclude
    )
    return split, exclude, sets


def protocol_record(
    config: EvalConfig, asked: tuple[Split, frozenset[Any], Sets], drawn: str
) -> dict[str, Any]:
    """The ``protocol`` of results.json: the settings, the prompts' hashes, the split, the combinations
    asked (by hash) and where they came from."""
    split, exclude, sets = asked
    return {
        **config.protocol(),
        "prompt_hashes": PromptSet(config.template_dir).hashes(),
        "split": split.hash,
        "eval_set_hash": eval_set_hash(sets),
        "seed_source": drawn,
        "excluded": {"dataset": config.data, **exclusion_record(exclude)} if config.data else None,
    }


def dataset_drawn(config: EvalConfig) -> frozenset[Any]:
    """The combinations the dataset of ``--data`` drew (none without it, or with ``--eval-set``, whose rows
    are the release's): the train and all sets are drawn from the others."""
    if config.data is None or config.eval_set is not None:
        return frozenset()
    from skillmix.dataset_folder.layout import read_dataset_folder

    return read_dataset_folder(config.data).drawn_keys()


def seed_source(config: EvalConfig, log: Log) -> str:
    """Where the sampling seed of the drawn combinations came from, said when it is not the dataset's."""
    if config.eval_set is not None:
        return "the eval set's rows"
    if config.data is None:
        return "drawn with --seed"
    recorded = dataset_draw(config.data).get("seed")
    if recorded == config.seed:
        return f"the dataset's ({config.data})"
    log(
        f"Sampling seed {config.seed} given: not the dataset's {recorded}, so these are not its release's "
        "eval sets (and the leakage audit did not check them)"
    )
    return f"given ({config.seed}), not the dataset's ({recorded})"


def eval_set_hash(sets: Sets) -> str:
    """What identifies the combinations asked about: their ids by setting and k (two evaluations with the
    same hash answered the same questions)."""
    return content_hash({f"{setting}:{k}": [c.id for c in combos] for (setting, k), combos in sets.items()})


def expand(sets: Sets, generations: int) -> list[dict[str, Any]]:
    """One pipeline row per generation, interleaved over (setting, k) so that a cap stops them alike."""
    return interleave(
        [
            pipeline_row(combo, id=f"{setting}:{combo.id}:g{g}", setting=setting, generation=g)
            for combo in combos
            for g in range(generations)
        ]
        for (setting, _k), combos in sets.items()
    )


def sample_record(
    row: dict[str, Any], models: tuple[ResolvedModel, ResolvedModel], hashes: dict[str, str], student: Student
) -> dict[str, Any]:
    """One line of ``samples.jsonl``: the row's dataset record (:func:`skillmix.pipelines.rows.to_record`)
    and what re-scoring it needs, with the student's and judge's identities."""
    record = to_record(row, models, hashes)
    del record["teacher"]
    judge = models[1]
    return {
        **record,
        **{key: row.get(key) for key in SAMPLE_KEYS},
        "student": student.identity,
        "judge": judge.identity or judge.model,
    }
