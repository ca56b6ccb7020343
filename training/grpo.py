"""``skillmix train --method grpo``: TRL's ``GRPOTrainer`` with the Skill-Mix judge as the reward.

    # CPU, seconds: a tiny random student, a judge on any OpenAI-compatible server
    skillmix train --config tiny/grpo --data out --grpo-judge-model gpt-4o-mini --grpo-judge-max-usd 1
    skillmix train --config tiny/grpo --data out --plan          # the judge's requests and cost, nothing run

The student writes the answer for a training combination (:mod:`.reward`: the dataset's kN rows, a
one-round prompt); the judge grades it as the dataset's judge does, and the reward is a declared function
of the points (``grpo.reward``). :func:`prepare` makes every check first, writing nothing and sending
nothing to the judge: the checks of every method (:func:`skillmix.training.run.check_run`: the batch, the
Hub, the output folder, the datasets and their leakage re-check), the leakage audit of the prompts (a
held-out skill or topic, or an evaluation combination, is refused: exit 2), the judge's role and price
(:mod:`skillmix.llm.roles`), the prompt lengths, the model; :func:`skillmix.training.run.fit` then runs
the steps. When the next step's grading cannot be afforded under ``grpo.judge.client.max_usd``, training
stops cleanly: the checkpoint of the last step is saved, the run record says why, one line says
``stopped at step N: step N+1's grading does not fit under the judge's spending cap $X: its worst case is
$W, $L is left (spent $S)``, and the command exits 0; the
same command with a higher cap (not part of the run's fingerprint) resumes from that checkpoint.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError, build
from skillmix.llm.prices import PriceTable
from skillmix.llm.roles import ResolvedModel, check_priced, check_reachable, resolve_judge
from skillmix.pipelines.config import ProtocolConfig
from skillmix.prompts import PromptSet
from skillmix.training import data as data_mod
from skillmix.training.config import TrainConfig
from skillmix.training.leakage import check_prompts, split_of
from skillmix.training.models import load_model, load_tokenizer, lora_config
from skillmix.training.plan import completions_per_step
from skillmix.training.reward import (
    CACHE_FILE,
    JOURNAL,
    Combination,
    Judge,
    JudgeCapReached,
    JudgeReward,
    prompt_set,
    render_prompt,
)
from skillmix.training.run import Log, Prepared, check_run, fit, trainer_arguments
from skillmix.training.tiny import tokenizer_corpus


@dataclass
class Judging:
    """What the reward needs beside the run: the prompts' combinations, the judge and its prices."""

    combinations: list[Combination]
    judge: ResolvedModel
    protocol: ProtocolConfig
    prices: PriceTable


def run(config: TrainConfig, log: Log = print) -> Path:
    """Prepare, then train; returns the output folder."""
    prepared, judging = prepare(config, log)
    return fit(prepared, lambda callbacks: make_trainer(prepared, judging, callbacks, log), log)


def prepare(config: TrainConfig, log: Log = print) -> tuple[Prepared, Judging]:
    """Every check of the run, in the order that fails fastest; raises ``ConfigError``/``ValueError``."""
    grpo = config.grpo
    if not grpo.judge.model:
        raise ConfigError("grpo.judge.model: name the judge (--grpo-judge-model NAME)")
    protocol = build(ProtocolConfig, grpo.judge.protocol(), "grpo.judge")  # the protocol's own checks
    completions_per_step(config)  # whole groups of num_generations in a step
    checks = check_run(config)
    combinations, reports = _audited_prompts(checks.sources, config, log)
    checks.leakage += reports
    prices = PriceTable.load(grpo.judge.prices)
    judge = resolve_judge(grpo.judge, None, " (or serve the judge elsewhere: --grpo-judge-base-url URL)")
    check_priced(grpo.judge.client.max_usd, judge, prices)
    texts = [render_prompt(PromptSet(), c, grpo.prompt_mode) for c in combinations]
    prompts = texts if grpo.prompt_mode == "completion" else [[{"role": "user", "content": t}] for t in texts]
    conversations = [m for _, m in data_mod.conversations(checks.sources)]
    tokenizer = load_tokenizer(
        config.model, tokenizer_corpus(conversations, texts) if config.model.tiny else []
    )
    _check_lengths(tokenizer, combinations, prompts, config)
    check_reachable(judge)  # the last check: it asks the judge's server for its models, nothing more
    args = grpo_config(config, checks.accumulation)
    log(f"{len(combinations)} prompts, judged by {judge.describe()}; loading the model")
    model = load_model(config.model, tokenizer, config.training.max_length)
    rows = [{"prompt": p, "combination": c.id} for p, c in zip(prompts, combinations, strict=True)]
    prepared = Prepared(config, checks, rows, len(rows), tokenizer, model, args)
    return prepared, Judging(combinations, judge, protocol, prices)


def _audited_prompts(
    sources: list[data_mod.LoadedSource], config: TrainConfig, log: Log
) -> tuple[list[Combination], list[dict[str, Any]]]:
    """The prompt set of every dataset, each audited against its own split and evaluation sets."""
    combinations, reports, skipped = [], [], 0
    for item in sources:
        split, catalog = split_of(item)
        found, left_out = prompt_set(item, catalog, {s.name for s in split.heldout_skills})
        reports.append(check_prompts(item, [c.audit_row() for c in found], config.data.evaluation))
        combinations += found
        skipped += left_out
    if skipped:
        log(f"{skipped} k=1 rows of a held-out skill give no prompt (an RL prompt never shows one)")
    if not combinations:
        raise ConfigError("data.datasets: no row gives a prompt of training skills and topics")
    return combinations, reports


def _check_lengths(
    tokenizer: Any, combinations: list[Combination], prompts: list[Any], config: TrainConfig
) -> None:
    """Every prompt and its longest completion fit in ``training.max_length``."""
    room = config.training.max_length - config.grpo.max_completion_length
    for combination, prompt in zip(combinations, prompts, strict=True):
        if isinstance(prompt, str):
            length = len(tokenizer(prompt)["input_ids"])
        else:
            ids = tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, tokenize=True, return_dict=True
            )
            length = len(ids["input_ids"])
        if length > room:
            raise ConfigError(
                f"training.max_length {config.training.max_length} is shorter than the prompt of "
                f"{combination.id} ({length} tokens) plus grpo.max_completion_length "
                f"{config.grpo.max_completion_length}"
            )


def grpo_config(config: TrainConfig, accumulation: int) -> Any:
    """TRL's ``GRPOConfig``: the shared step loop, and one generation batch per optimizer step
    (per-device batch x accumulation x processes completions, TRL's default ``generation_batch_size``)."""
    from trl import GRPOConfig

    grpo = config.grpo
    return GRPOConfig(
        **trainer_arguments(config, accumulation),
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        beta=grpo.beta,
        num_iterations=1,
        log_completions=False,
        use_vllm=grpo.use_vllm,  # GPU only, refused before loading without one (launch.check_gpu_paths)
        vllm_mode=grpo.vllm_mode,
        vllm_gpu_memory_utilization=grpo.vllm_gpu_memory_utilization,
        vllm_enable_sleep_mode=grpo.vllm_enable_sleep_mode,
    )


def make_trainer(prepared: Prepared, judging: Judging, callbacks: list[Any], log: Log) -> Any:
    """TRL's ``GRPOTrainer`` with the judge's reward, in a :class:`StoppableTrainer`."""
    from datasets import Dataset
    from trl import GRPOTrainer

    config, out = prepared.config, prepared.config.output_path()
    rank = os.environ.get("RANK", "0")
    run_id = f"grpo-{uuid.uuid4().hex[:12]}-rank{rank}"  # names this process's reservations
    rules = judging.protocol.scoring_rules
    judge = Judge(config.grpo.judge, judging.judge, out / CACHE_FILE, judging.prices, run_id, rules)
    journal = out / (JOURNAL if rank == "0" else JOURNAL.replace(".jsonl", f"-rank{rank}.jsonl"))
    reward = JudgeReward(judge, judging.combinations, config.grpo.reward, journal)
    trainer = GRPOTrainer(
        model=prepared.model,
        reward_funcs=reward,
        args=prepared.args,
        train_dataset=Dataset.from_list(prepared.rows),
        processing_class=prepared.tokenizer,
        callbacks=callbacks,
        peft_config=lora_config(config.model.lora),  # None: the whole model is trained
    )
    return StoppableTrainer(trainer, reward, judging, log)


class StoppableTrainer:
    """A GRPO trainer whose ``train`` stops cleanly at the judge's spending cap: the last step's checkpoint
    saved, the reason logged and kept in ``record_extra`` (with the judge's protocol and spend), which
    :func:`skillmix.training.run.fit` adds to the run record."""

    def __init__(self, trainer: Any, reward: JudgeReward, judging: Judging, log: Log) -> None:
        self.trainer, self.reward, self.judging, self.log = trainer, reward, judging, log
        self.stopped: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trainer, name)

    def train(self, **kwargs: Any) -> Any:
        try:
            return self.trainer.train(**kwargs)
        except JudgeCapReached as exc:
            self.stopped = f"stopped at step {self.trainer.state.global_step}: {exc}"
            self.trainer._save_checkpoint(self.trainer.model, trial=None)  # to resume from, a higher cap
            self.log(self.stopped)
            return None

    @property
    def record_extra(self) -> dict[str, Any]:
        client = self.reward.judge.client
        return {
            "stopped": self.stopped,
            "judge": {**self.judging.protocol.judge_protocol(), "served": self.judging.judge.describe()},
            "judge_spent_usd": client.cache.spent_usd(),
            "judge_requests": client.stats["requests"],
            "judge_cached": client.stats["cached"],
            "ungradable": self.reward.ungradable,
            "rewards": self.reward.journal.name,
        }
