"""The distilabel pipeline of D_SKILL-MIX(k): round 1 -> round 2 -> grade (3 runs) -> decide.

:func:`build_pipeline` is the factory (nothing runs at import), :func:`run_pipeline` runs it once over a
list of combinations and returns every row; :func:`resolve_models` decides which model plays teacher and
judge, where. What a whole build does around it (checks, rounds, the output folder) is in
:mod:`skillmix.pipelines.run`.

Reliability lives beneath distilabel: the per-request cache in ``OUT/.skillmix/cache.sqlite`` makes a
re-run after a crash pay for nothing already done (distilabel's own resume is never used), and every row
ends as kept, rejected or failed with its reason.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Any

from skillmix.dataset_folder.layout import CACHE_FILE
from skillmix.llm.roles import ResolvedModel, teacher_and_judge
from skillmix.pipelines.beneath import distilabel_run
from skillmix.pipelines.config import DatasetConfig, ProtocolConfig
from skillmix.pipelines.interrupt import Guard, Interrupted
from skillmix.pipelines.progress import PROGRESS_DIR, ProgressLog, StageProgress, after_fork


def resolve_models(config: DatasetConfig, embedded_url: str | None = None) -> tuple[ResolvedModel, ...]:
    """The teacher and judge of a dataset build (:mod:`skillmix.llm.roles`); ``embedded_url``: both are the
    embedded model served there."""
    embedded = None
    if embedded_url is not None:
        from skillmix.llm.embedded import MODEL_NAME

        embedded = (MODEL_NAME, embedded_url, f"embedded|{MODEL_NAME}")
    return teacher_and_judge(config.teacher, config.judge, embedded, config.file_roles())


def make_llm(
    config: ProtocolConfig, model: ResolvedModel, workdir: Path, concurrency: int, stage: str, run_id: str
) -> Any:
    from skillmix.pipelines.tasks import SkillMixLLM

    settings = config.settings_of(model.role)
    client = config.client.model_copy(update={"concurrency": max(1, concurrency)})
    return SkillMixLLM(
        model=model.model,
        base_url=model.base_url,
        api_key_env=model.api_key_env,
        identity=model.identity,
        cache_path=str(workdir / CACHE_FILE),
        progress_path=str(workdir / PROGRESS_DIR),
        prices_path=config.prices,
        free=not model.priced,
        client_config=client.model_dump(),
        stage=stage,
        run_id=run_id,
        mode=model.mode,
        reply_kind="generation" if stage != "grade" else f"grader_{config.grader_format}",
        template_dir=config.template_dir,
        batch=settings.batch,
        generation_kwargs={
            "temperature": settings.temperature,
            "max_new_tokens": settings.max_tokens,
            "seed": settings.seed,
        },
    )


def stage_concurrency(config: ProtocolConfig, n_rows: int) -> dict[str, int]:
    """Requests in flight per stage, so that all stages together never exceed ``client.concurrency``.

    When the run fits in one batch (``batch_size`` unset, the default, or >= ``n_rows``) the stages run
    one after the other (distilabel hands a step its batch only when the previous step finished it), so
    each stage gets the whole budget and keeps it full. Otherwise the stages overlap and the budget is
    split by the requests each makes per sample (1, 1, grader runs).
    """
    if config.batch_size is None or n_rows <= config.batch_size:
        return dict.fromkeys(("round1", "round2", "grade"), config.client.concurrency)
    weights = {"round1": 1, "round2": 1, "grade": config.grader_runs}
    total = sum(weights.values())
    return {stage: max(1, config.client.concurrency * w // total) for stage, w in weights.items()}


def build_pipeline(
    config: ProtocolConfig,
    rows: list[dict[str, Any]],
    models: tuple[ResolvedModel, ...],
    workdir: Path,
    run_id: str = "",
) -> Any:
    """The distilabel pipeline over ``rows`` (one per combination); nothing runs until ``.run()``."""
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts

    from skillmix.pipelines.steps import DecidePoints

    batch = config.batch_size or max(1, len(rows))
    scratch = (
        workdir / "distilabel" / (run_id or "run")
    )  # each run its own: distilabel's cache is never reused
    with Pipeline(name="skillmix-dataset", cache_dir=str(scratch)) as pipeline:
        load = LoadDataFromDicts(name="combinations", data=rows, batch_size=batch)
        round1, round2, grade = _llm_stages(config, models, workdir, run_id, batch, len(rows))
        decide = DecidePoints(
            name="decide",
            rules=config.scoring_rules,
            input_batch_size=batch,
            progress_path=str(workdir / PROGRESS_DIR),
            run_id=run_id,
        )
        load >> round1 >> round2 >> grade >> decide
    return pipeline


def _llm_stages(
    config: ProtocolConfig,
    models: tuple[ResolvedModel, ...],
    workdir: Path,
    run_id: str,
    batch: int,
    rows: int,
) -> tuple[Any, Any, Any]:
    """Round 1 and round 2 of the teacher, then the judge's ``grader_runs`` grades of each text."""
    from skillmix.pipelines.tasks import GenerateRound1, GenerateRound2, GradeText

    teacher, judge = models
    share = stage_concurrency(config, rows)
    common = {
        "template_dir": config.template_dir,
        "input_batch_size": batch,
        "add_raw_output": False,
        "add_raw_input": False,
    }

    def llm(model: ResolvedModel, stage: str) -> Any:
        return make_llm(config, model, workdir, share[stage], stage, run_id)

    round1 = GenerateRound1(name="round1", llm=llm(teacher, "round1"), **common)
    round2 = GenerateRound2(name="round2", llm=llm(teacher, "round2"), **common)
    grade = GradeText(
        name="grade",
        llm=llm(judge, "grade"),
        num_generations=config.grader_runs,
        group_generations=True,
        grader_format=config.grader_format,
        **common,
    )
    return round1, round2, grade


def run_pipeline(
    config: ProtocolConfig,
    rows: list[dict[str, Any]],
    models: tuple[ResolvedModel, ...],
    workdir: Path,
    worst_usd: dict[str, dict[str, float]] | None = None,
    guard: Guard | None = None,
) -> list[dict[str, Any]]:
    """Run the pipeline over ``rows`` (:func:`skillmix.pipelines.driver.pipeline_row`); every input row comes
    back (kept, rejected or failed).

    ``worst_usd`` (under a spending cap): each row's worst case by stage, which its first request reserves.
    """
    if worst_usd is not None:
        rows = [{**row, "worst_usd": worst_usd[row["id"]]} for row in rows]
    run_id = uuid.uuid4().hex
    try:
        with distilabel_run():
            pipeline = build_pipeline(config, rows, models, workdir, run_id)
            stopping = guard.running(pipeline) if guard else contextlib.nullcontext()
            with stopping, StageProgress(workdir / PROGRESS_DIR, run_id, total=len(rows)) as progress:
                after_fork(pipeline, progress.start)
                distiset = pipeline.run(use_cache=False)
    except Interrupted as exc:
        decided = ProgressLog(workdir / PROGRESS_DIR).counts(run_id).get("decide", {})
        exc.done = sum(decided.values())
        raise
    finally:
        shutil.rmtree(workdir / "distilabel" / run_id, ignore_errors=True)
    produced = {row["id"]: row for row in distiset["default"]["train"].to_list()} if distiset else {}
    out = []
    for row in rows:  # a row distilabel lost is reported, never dropped
        found = produced.get(row["id"])
        if found is None:
            found = {
                **row,
                "outcome": "failed",
                "status": "api_error",
                "failure_reason": "row lost by the pipeline (no output for it)",
            }
        out.append(found)
    return out
