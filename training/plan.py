"""``skillmix train --plan``: what a run will do, and what its judge may cost, before any of it is done.

Nothing is trained, loaded or sent: the plan reads the recipe (and, for a local dataset, its manifest's
catalog). For ``method: grpo`` the judge grades every completion ``grader_runs`` times, and TRL 1.16
generates one *generation batch* per optimizer step (``steps_per_generation`` defaults to the gradient
accumulation, so ``generation_batch_size`` = per-device batch x accumulation x processes completions,
``num_generations`` of them per prompt). So

    judge requests per step = per_device_train_batch_size x accumulation x processes x grader_runs

(answers already in the judge's cache are not sent again, so a run sends at most that many). SFT and DPO
send none. The worst case of a request is its price table's cost of the longest grader prompt (the
catalog's longest skills and topic, an answer of ``max_completion_length`` tokens of at most
:data:`MAX_TOKEN_BYTES` bytes each, counted as :func:`skillmix.llm.prices.token_bound` does) and
``max_tokens`` of reply; the spending cap itself is enforced at run time on the real prompts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.llm.prices import PriceTable, token_bound
from skillmix.prompts import PromptSet
from skillmix.training.config import TrainConfig, accumulation_steps, world_size

MAX_TOKEN_BYTES = 16  # the longest student token the plan assumes (a byte-level BPE token is rarely longer)
_K_CONFIG = re.compile(r"k(\d+)")


def completions_per_step(config: TrainConfig, processes: int | None = None) -> int:
    """The completions of one optimizer step (TRL's ``generation_batch_size``); it must hold whole groups
    of ``num_generations``."""
    processes = processes or world_size()
    training = config.training
    completions = training.per_device_train_batch_size * accumulation_steps(training, processes) * processes
    if completions % config.grpo.num_generations:
        raise ConfigError(
            f"grpo.num_generations: {config.grpo.num_generations} does not divide the {completions} "
            f"completions of a step (per-device batch x accumulation x processes)"
        )
    return completions


def judge_requests_per_step(config: TrainConfig, processes: int | None = None) -> int:
    """The judge's requests in one optimizer step at most: 0 for SFT and DPO."""
    if config.method != "grpo":
        return 0
    return completions_per_step(config, processes) * config.grpo.judge.grader_runs


def worst_request_usd(config: TrainConfig) -> float | None:
    """The most one grader request can cost; None when the judge's price is not known."""
    judge = config.grpo.judge
    prices = PriceTable.load(judge.prices)
    if not judge.model or not prices.is_priced(judge.model):
        return None
    skills, topic = _longest_combination(config)
    answer = "x" * (config.grpo.max_completion_length * MAX_TOKEN_BYTES)
    prompt = PromptSet().grader(answer, skills, topic, judge.grader_format)
    return prices.worst_case(
        judge.model, token_bound([{"role": "user", "content": prompt}]), judge.max_tokens
    )


def plan_lines(config: TrainConfig, processes: int | None = None) -> list[str]:
    """What ``--plan`` prints: the method, the steps, the judge's requests and worst-case cost."""
    processes = processes or world_size()
    steps = config.training.max_steps
    lines = [f"method: {config.method}", f"steps: {steps_line(config, processes)}"]
    if config.method != "grpo":
        return [*lines, "judge requests per step: 0"]
    completions, judge = completions_per_step(config, processes), config.grpo.judge
    accumulation = accumulation_steps(config.training, processes)
    groups, batch = completions // config.grpo.num_generations, config.training.per_device_train_batch_size
    lines.append(
        f"completions per step: {completions} = per-device batch {batch} x accumulation {accumulation} x "
        f"{processes} process(es) ({groups} prompts x {config.grpo.num_generations} generations)"
    )
    requests = judge_requests_per_step(config, processes)
    lines.append(
        f"judge requests per step: {requests} = {completions} completions x {judge.grader_runs} grader runs"
    )
    worst = worst_request_usd(config)
    if worst is None:
        lines.append(f"judge worst case: unknown ({judge.model or 'the judge'} is not in the price table)")
    else:
        per_step = worst * requests
        lines.append(
            f"judge worst case: ${per_step:.4f} per step, ${per_step * steps:.4f} for {steps} steps "
            f"({judge.model})"
        )
    cap = judge.client.max_usd
    lines.append(f"judge spending cap: ${cap:.2f}" if cap is not None else "judge spending cap: none")
    return [*lines, generation_line(config)]


def generation_line(config: TrainConfig) -> str:
    """How GRPO generates: transformers' ``generate``, or vLLM colocated (unavailable with these pins)."""
    from importlib.util import find_spec

    from skillmix.training.launch import VLLM_UNAVAILABLE

    grpo = config.grpo
    if not grpo.use_vllm:
        return "generation: transformers generate (grpo.use_vllm: false)"
    share = f"{grpo.vllm_gpu_memory_utilization:.0%} of each GPU, sleep mode {grpo.vllm_enable_sleep_mode}"
    if find_spec("vllm") is None:
        return f"generation: vLLM {grpo.vllm_mode} ({share}) is UNAVAILABLE: {VLLM_UNAVAILABLE}"
    return f"generation: vLLM {grpo.vllm_mode} ({share}); untested on GPUs here"


def flops_per_token(config: TrainConfig) -> tuple[int, str]:
    """FLOPs per parameter per token of the recipe's batch (a DPO batch counts pairs, a GRPO batch
    completions), and what they are: training is 6 (forward 2, backward 4) per sequence token; a DPO pair is
    two sequences with the reference's forward (2) on each, precomputed or not; GRPO adds the generation's
    forward (2, its FLOPs only: decoding is bound by memory, so its time is longer) and the old-policy pass
    (2), and the reference's forward (2) when beta > 0."""
    if config.method == "dpo":
        return 16, "DPO: 2 sequences a pair x (6 training + 2 reference forward)"
    if config.method == "grpo":
        reference = 2 if config.grpo.beta > 0 else 0
        extra = " + 2 reference forward" if reference else ""
        return 10 + reference, f"GRPO: 6 training + 2 generation (FLOPs only) + 2 old-policy pass{extra}"
    return 6, "SFT: 6 training"


def steps_line(config: TrainConfig, processes: int) -> str:
    """The optimizer steps: ``max_steps``, or DPO's epochs over the pairs (counted from a local folder's
    manifest; the pairs that lose answer tokens to ``max_length`` are dropped at run time, so at most)."""
    t = config.training
    if t.epochs is None:
        return str(t.max_steps)
    pairs = _pairs_in_manifest(config)
    if pairs is None:
        return f"{t.epochs} epoch(s) over the pairs (counted when they are read), at most {t.max_steps}"
    steps = epoch_steps(
        pairs, t.epochs, t.per_device_train_batch_size * accumulation_steps(t, processes) * processes
    )
    return (
        f"{min(steps, t.max_steps)} = {t.epochs} epoch(s) over at most {pairs:,} pairs (before the pairs "
        f"that lose answer tokens are dropped), at most max_steps {t.max_steps}"
    )


def epoch_steps(rows: int, epochs: int, batch: int) -> int:
    """Optimizer steps of ``epochs`` passes over ``rows`` in batches of ``batch`` (a last partial batch is a
    step, as the trainer's data loader gives it)."""
    return epochs * -(-rows // batch)


def _pairs_in_manifest(config: TrainConfig) -> int | None:
    total = 0
    for source in config.data.datasets:
        manifest = Path(source.path) / "manifest.json"
        if not manifest.is_file():
            return None
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("configs", {})
        total += sum(int(listed.get(name, {}).get("rows", 0)) for name in source.configs)
    return total


def memory_check(config: TrainConfig, launch: Any) -> tuple[list[str], str | None]:
    """One GPU's memory under ``launch`` (the recipe's for ``--plan``, this process's for a run), and why it
    does not fit (None: it fits, or was not checked). The GPU's memory: this machine's first GPU, else
    ``launcher.gpu_memory_gb``."""
    from skillmix.training.launch import device_memory_gb
    from skillmix.training.memory import memory_lines

    device = device_memory_gb()
    if device is not None:
        return memory_lines(config, launch, device, "this machine's GPU")
    setting = config.launcher.gpu_memory_gb
    return memory_lines(config, launch, setting, "launcher.gpu_memory_gb / --gpu-memory-gb")


def _longest_combination(config: TrainConfig) -> tuple[list[Any], str]:
    """The catalog's longest skills (as many as the largest k of the recipe's configs) and topic."""
    from skillmix.catalog import load_catalog

    source = config.data.datasets[0]
    if Path(source.path).is_dir():
        from skillmix.dataset_folder.layout import read_dataset_folder

        catalog = read_dataset_folder(source.path).catalog()
    else:
        catalog = load_catalog("builtin")
    ks = [int(m.group(1)) for s in config.data.datasets for c in s.configs if (m := _K_CONFIG.fullmatch(c))]
    size = lambda skill: len(skill.name) + len(skill.definition) + len(skill.example)  # noqa: E731
    skills = sorted(catalog.skills, key=size, reverse=True)[: max(ks, default=3)]
    return skills, max(catalog.topics, key=len)
