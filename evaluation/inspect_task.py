"""Skill-Mix as an inspect_ai task: ``inspect eval skillmix/skill_mix`` (the ``inspect`` extra).

    pip install "skillmix[inspect]"
    inspect eval skillmix/skill_mix --model openai/gpt-4o --model-role grader=openai/gpt-4o \\
        -T k=3 -T setting=held-out [-T n=100] [-T release=org/skill-mix@v1.0.0 | -T data=out] [-T config=FILE]

The task is registered through inspect's entry point (``[project.entry-points.inspect_ai] skillmix``), whose
name is the task's prefix. It evaluates what ``skillmix eval`` evaluates, with the functions it calls:

* the dataset: the combinations of :func:`skillmix.evaluation.run.asked` under an
  :class:`~skillmix.evaluation.config.EvalConfig` built from the task's parameters (the same names, the same
  defaults, the same checks), one sample per combination and setting, its metadata the combination's id,
  skills, topic, setting and k;
* the solver: the two rounds of :class:`skillmix.prompts.PromptSet` with the student's settings as
  ``GenerateConfig``, epoch ``e`` seeded ``student.seed + e - 1`` as ``skillmix eval`` seeds generation
  ``e - 1``;
* the scorer: the judge through the ``grader`` model role (required: inspect would otherwise grade with the
  student), ``grader_runs`` samples of the rubric prompt, run ``i`` seeded ``judge.seed + i``, each parsed:
  the judge's rule, :func:`skillmix.grade_runs.grade_answer_runs` (the pipeline's and the cross-judge's);
  the generation's three metrics by :func:`skillmix.evaluation.inspect_log.generation_value` under the run's
  :class:`~skillmix.rules.ScoringRules`. A request that fails after inspect's retries raises: the sample is
  an error (left out, counted), never a zero;
* the epochs: ``generations`` of them (3), reduced by ``max`` metric by metric, as the protocol takes the
  best generation; the metrics their mean and standard error (ddof=1), by setting and k when there are
  several.

The protocol record of ``skillmix eval``'s results.json rides in the task's metadata, so that
``skillmix eval import-inspect LOG OUT`` writes an evaluation folder from the log (docs/inspect.md).
"""

from __future__ import annotations

import logging
from typing import Any

from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageUser, GenerateConfig, get_model
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, Value, mean, metric, scorer, stderr
from inspect_ai.solver import Generate, Solver, TaskState, solver

from skillmix.config import ConfigError, build, merge
from skillmix.evaluation.config import EvalConfig, shared_settings, with_dataset
from skillmix.evaluation.inspect_log import (
    GROUP,
    STORE,
    TASK_METADATA,
    combination_sample_id,
    generation_value,
    reply_status,
    start_record,
)
from skillmix.evaluation.run import asked, protocol_record, seed_source
from skillmix.grade_runs import Send, grade_answer_runs, skipped_runs
from skillmix.metrics import METRICS
from skillmix.pipelines.driver import pipeline_row
from skillmix.prompts import PromptSet
from skillmix.text import extract_answer


@task
def skill_mix(config: str | None = None, **settings: Any) -> Task:
    """Skill-Mix(k): each parameter is a setting of ``skillmix eval`` (``k``, ``setting``, ``n``, ``seed``,
    ``split_seed``, ``catalog``, ``topics``, ``data``, ``generations``, ``grader_runs``, ``grader_format``,
    ``name_penalty``, ``length_override``, ``unparseable``, ``template_dir``; ``release`` for its
    ``--eval-set``; the student's and judge's sampling as ``temperature``, ``max_tokens``, ``student_seed``,
    ``judge_temperature``, ``judge_max_tokens``, ``judge_seed``), over its defaults and ``config`` (an
    evaluation YAML or a ``skillmix dataset`` preset, as ``skillmix eval --config``)."""
    evaluation = eval_config(config, settings)
    drawn = asked(evaluation)
    drawn_from = seed_source(evaluation, logging.getLogger(__name__).warning)
    prompts = PromptSet(evaluation.template_dir)
    samples = [
        combination_sample(pipeline_row(combo, setting=setting), prompts)
        for (setting, _k), combos in drawn[2].items()
        for combo in combos
    ]
    return Task(
        dataset=MemoryDataset(samples, name="skill-mix"),
        solver=skill_mix_conversation(evaluation),
        scorer=skill_mix_judge(evaluation),
        metrics=metrics(len(drawn[2])),
        epochs=Epochs(evaluation.generations, "max"),
        fail_on_error=False,
        metadata={TASK_METADATA: protocol_record(evaluation, drawn, drawn_from)},
    )


RENAMED = {  # task parameter -> the EvalConfig field it sets (the others are named as the field)
    "release": ("eval_set",),
    "temperature": ("student", "temperature"),
    "max_tokens": ("student", "max_tokens"),
    "student_seed": ("student", "seed"),
    "judge_temperature": ("judge", "temperature"),
    "judge_max_tokens": ("judge", "max_tokens"),
    "judge_seed": ("judge", "seed"),
}


# What inspect decides, not a task parameter: the models (--model, --model-role grader), the client's limits
# and retries (--max-connections, --max-retries), prices and batches (skillmix's own).
INSPECTS = ("student", "judge", "client", "prices", "batch_size")


def eval_config(config: str | None, settings: dict[str, Any]) -> EvalConfig:
    """The :class:`EvalConfig` of the task's parameters, as ``skillmix eval`` builds it from its flags (the
    judge is the ``grader`` role's, so none is named here; a ``config`` file's models are not used)."""
    taken = [key for key in settings if key in INSPECTS]
    if taken:
        raise ConfigError(
            f"-T {taken[0]}: inspect decides it (the student is --model, the judge --model-role grader=..., "
            "the limits --max-connections and --max-retries); the task's sampling is -T temperature, "
            "max_tokens, student_seed, judge_temperature, judge_max_tokens, judge_seed"
        )
    given: dict[str, Any] = {}
    for key, value in settings.items():
        *parents, leaf = RENAMED.get(key, (key,))
        target = given
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    data = merge(shared_settings(config) if config else {}, given)
    if data.get("data"):
        data = with_dataset(data)
    return build(EvalConfig, data, "task parameters")


def combination_sample(row: dict[str, Any], prompts: PromptSet) -> Sample:
    """One combination in one setting: the round-1 prompt, and what the scorer and the log reader need."""
    metadata = {key: row[key] for key in ("combination", "setting", "k", "skills", "categories", "topic")}
    metadata[GROUP] = f"{row['setting']} k={row['k']}"
    metadata["skill_records"] = row["skill_records"]
    return Sample(
        id=combination_sample_id(row["setting"], row["combination"]),
        input=prompts.round1(row["skill_records"], row["topic"]),
        metadata=metadata,
    )


def metrics(groups: int) -> dict[str, list[Any]]:
    """Each metric's mean and standard error, by (setting, k) when the task asks about several."""
    if groups == 1:
        return {name: [mean(), stderr()] for name in METRICS}
    return {name: [by_group()] for name in METRICS}


@metric
def by_group() -> Metric:
    """inspect's ``mean`` and ``stderr`` in each (setting, k): ``held-out k=3 mean``, ``held-out k=3
    stderr``, ... (two ``grouped`` metrics on one score keep only the first's values)."""
    statistics = (("mean", mean()), ("stderr", stderr()))

    def compute(scores: list[SampleScore]) -> Value:
        groups: dict[str, list[SampleScore]] = {}
        for found in scores:
            groups.setdefault(str((found.sample_metadata or {})[GROUP]), []).append(found)
        return {f"{group} {name}": statistic(members) for group, members in groups.items()
                for name, statistic in statistics}  # fmt: skip

    return compute


@solver
def skill_mix_conversation(config: EvalConfig) -> Solver:
    """Round 1, the reply, round 2, the reply: the student's generation of this epoch."""
    prompts = PromptSet(config.template_dir)
    student = config.student

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        get_model(role="grader", required=True)  # no judge: the sample errors before the student is paid
        meta = state.metadata
        record = start_record(meta, state.epoch)
        state.store.set(STORE, record)
        state.messages = [ChatMessageUser(content=prompts.round1(meta["skill_records"], meta["topic"]))]
        sampling = {"temperature": student.temperature, "max_tokens": student.max_tokens,
                    "seed": student.seed + state.epoch - 1}  # fmt: skip
        for stage in ("round1", "round2"):
            if stage == "round2":
                state.messages.append(ChatMessageUser(content=prompts.round2(meta["k"], meta["topic"])))
            state = await generate(state, tool_calls="none", **sampling)
            text = state.output.completion
            status, error = reply_status(state.output.stop_reason, text)
            if status == "api_error":  # the infrastructure's: the sample errors, as skillmix eval's does
                raise RuntimeError(f"student, {stage}: {error}")
            record[stage] = None if status == "refused" else text  # no text, as skillmix eval records it
            record[f"{stage}_status"], record[f"{stage}_error"] = status, error
            if status != "ok":
                if stage == "round1":  # as skillmix eval records the round it did not send
                    record["round2_status"], record["round2_error"] = "skipped", f"round 1 {status}: {error}"
                break
        else:
            record["answer"] = extract_answer(record["round2"])
            if record["answer"] is None:
                record["round2_status"] = "unparseable"
                record["round2_error"] = "no text after 'Answer:' in the round-2 reply"
        record["conversation"] = [{"role": m.role, "content": m.text} for m in state.messages]
        state.store.set(STORE, record)
        return state

    return solve


@scorer(metrics={name: [mean(), stderr()] for name in METRICS})
def skill_mix_judge(config: EvalConfig) -> Scorer:
    """The judge's ``grader_runs`` grades of the answer, voted and checked under the run's rules: the
    generation's three metrics, with the points and every grader output in the metadata."""
    prompts = PromptSet(config.template_dir)
    judge, rules = config.judge, config.scoring_rules

    async def score(state: TaskState, target: Target) -> Score:
        record = dict(state.store.get(STORE))
        meta = state.metadata
        if record.get("round2_status") == "ok":
            send = grader_send(get_model(role="grader", required=True), judge)
            skills, topic, runs = meta["skill_records"], meta["topic"], config.grader_runs
            graded = grade_answer_runs(send, prompts, skills, topic, record["answer"], config.grader_format,
                                       runs, judge.seed)  # fmt: skip
            record.update(await graded)  # an error left after inspect's retries raises: the sample's
        else:  # the runs skillmix eval skips, recorded as it records them
            record.update(skipped_runs(record["round2_status"], record["round2_error"], config.grader_runs))
        value, points = generation_value(record, config.grader_runs, rules)
        record["points"] = points
        return Score(value=value, answer=record.get("answer"), metadata=record)

    return score


def grader_send(grader: Any, judge: Any) -> Send:
    """The ``grader`` role's model as the sender of :func:`skillmix.grade_runs.grade_answer_runs`: a run
    sampled by :func:`run_config`, its reply read by :func:`grader_reply`."""

    async def send(messages: list[dict[str, str]], seed: int | None) -> tuple[str | None, str, str | None]:
        chat = [ChatMessageUser(content=m["content"]) for m in messages]  # the rubric: one user message
        return grader_reply(await grader.generate(chat, config=run_config(judge, seed)))

    return send


def run_config(judge: Any, seed: int | None) -> GenerateConfig:
    """A grader run: a sample at the judge's temperature and ``max_tokens``, seeded ``seed`` (run ``i``'s,
    :func:`skillmix.grade_runs.run_seed`)."""
    return GenerateConfig(temperature=judge.temperature, max_tokens=judge.max_tokens, seed=seed)


def grader_reply(output: Any) -> tuple[str | None, str, str | None]:
    """One grader run's reply as :func:`skillmix.grade_runs.grade_answer_runs` reads it: its text, status
    (``skillmix.statuses``) and error."""
    text = output.completion
    status, error = reply_status(output.stop_reason, text)
    if status == "truncated":  # a cut grade is read as far as it goes, as skillmix eval reads it
        status, error = "ok", None
    if status == "api_error":
        raise RuntimeError(f"grader: {error}")
    if status != "ok":  # refused, too long: a lost vote with no output, as skillmix eval records it
        return None, status, error
    return text, "ok", None
