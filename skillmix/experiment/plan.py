"""``skillmix experiment run FILE --plan``: every stage, its requests, its cost and its GPU-hours; nothing
is sent, trained or written, and no key, server or GPU is needed.

* **Requests and dollars** are those of the stage's own plan: the dataset's first round as ``skillmix
  dataset --dry-run`` prices it (the worst case every prompt at its byte bound and every reply at
  ``max_tokens``, which the spending cap reserves; the expected case prompts at ~4 bytes a token and
  replies at half ``max_tokens``); an evaluation's ``combinations x generations x (2 + grader_runs)``
  requests, of which only the judge's are priced when the student runs here.
* **GPU-hours** of a training run: ``F x parameters x tokens / (MFU x peak FLOP/s)``, tokens at most
  ``max_steps x effective batch x max_length`` (every sample at its longest), with the launcher's assumed
  MFU and peak; parameters from the student's ``parameters`` or, for a tiny model, from its shape. ``F``
  is the method's FLOPs per parameter and token (:func:`skillmix.training.plan.flops_per_token`): 6 for
  SFT, 16 for DPO (two sequences a pair and the reference's forward), 10 for GRPO (generation and the
  old-policy pass; 12 with a KL reference).
"""

from __future__ import annotations

from typing import Any

from skillmix.experiment.config import BASE
from skillmix.experiment.stages import Ledger

MORE_ROUNDS = " (more rounds under --target-accepted)"


def plan_lines(experiment: Any) -> list[str]:
    from skillmix.pipelines.driver import load_prices

    config, ledger = experiment.config, Ledger(experiment.root)
    prices = load_prices(experiment.dataset)
    lines = [
        f"Experiment {config.name} ({config.source}): {len(experiment.stages)} stages in {experiment.root}"
    ]
    totals = {"requests": 0, "worst": 0.0, "expected": 0.0, "gpu_hours": 0.0}
    for stage in experiment.stages:
        status = ledger.status(stage)
        figures = _figures(experiment, stage, prices)
        if status != "done":
            for key in totals:
                totals[key] += figures.get(key) or 0
        lines.append(f"  {stage.name:<34} {status:<10} {_describe(figures)}")
    lines += _power(experiment)
    lines += [f"  needs: {need}" for need in needs(experiment)]
    lines.append(
        f"  to run: {totals['requests']:,} requests, worst case ${totals['worst']:,.2f}, expected "
        f"${totals['expected']:,.2f}, at most {totals['gpu_hours']:,.1f} GPU-hours (every sample at "
        f"max_length tokens, an upper bound; assumed MFU "
        f"{config.launcher.mfu:.0%} of {config.launcher.peak_tflops:g} TFLOP/s)"
    )
    return lines


def _power(experiment: Any) -> list[str]:
    """The minimum detectable difference of each check of each finding (:mod:`skillmix.experiment.power`)."""
    from skillmix.experiment.power import SIMULATIONS, power_lines

    found = power_lines(experiment.config, int(experiment.eval_settings().get("n", 100)))
    if not found:
        return []
    head = (
        f"  power: the smallest Full Marks difference each check detects at 80% (the verdict rule on "
        f"{SIMULATIONS} simulated evaluations per difference):"
    )
    return [head, *found]


def needs(experiment: Any, stages: list[Any] | None = None) -> list[str]:
    """What this machine lacks to run ``stages`` (default: all): keys and GPUs; the run refuses without."""
    import os

    from skillmix.experiment.launch import cuda_available, is_tiny
    from skillmix.pipelines.config import uses_embedded

    out = []
    stages = experiment.stages if stages is None else stages
    kinds = {stage.kind for stage in stages}
    config, dataset = experiment.config, experiment.dataset
    urls = [dataset.teacher.base_url, dataset.judge.base_url or dataset.teacher.base_url]
    remote = not uses_embedded(dataset) and None in urls
    if kinds & {"dataset", "eval"} and remote and not os.environ.get("OPENAI_API_KEY"):
        out.append(
            "OPENAI_API_KEY (the teacher or judge is api.openai.com), or --teacher-base-url/--judge-base-url"
        )
    runs = [(stage.student, stage.training_set) for stage in stages if stage.kind == "train"]
    gpu = [s for s, ts in runs if not is_tiny(config, experiment.recipes, s, ts)]
    if gpu and not cuda_available():
        n = config.launcher.num_processes
        out.append(
            f"{n} GPU{'s' if n > 1 else ''} to train {', '.join(dict.fromkeys(gpu))} (none is visible)"
        )
    return out


def _describe(figures: dict[str, Any]) -> str:
    parts = []
    if figures.get("requests") is not None:
        parts.append(
            f"{figures['requests']:,} requests, ${figures['worst']:,.2f} worst / "
            f"${figures['expected']:,.2f} expected"
        )
    if figures.get("method") is not None:
        per_step = figures["judge_requests_per_step"]
        parts.append(f"{figures['method']}: {per_step:,} judge requests per step")
    if figures.get("gpu_hours") is not None:
        parts.append(
            f"{figures['gpu_hours']:,.2f} GPU-hours ({figures['tokens']:,} tokens at most, "
            f"{figures['parameters']:,.0f} parameters; FLOPs a parameter and token: {figures['flops']})"
        )
    if figures.get("note"):
        parts.append(figures["note"])
    return "; ".join(parts)


def _figures(experiment: Any, stage: Any, prices: Any) -> dict[str, Any]:
    if stage.kind == "dataset":
        return _dataset(experiment, prices)
    if stage.kind == "train":
        return _training(experiment, stage)
    if stage.kind == "eval":
        return _evaluation(experiment, stage, prices)
    if stage.kind == "crossjudge":
        return _cross_judge(experiment, stage, prices)
    return {"note": "no request"}


def _dataset(experiment: Any, prices: Any) -> dict[str, Any]:
    from skillmix.catalog import load_catalog
    from skillmix.pipelines.budget import RowCosts
    from skillmix.pipelines.dataset import resolve_models
    from skillmix.pipelines.run import Rounds

    config = experiment.dataset
    rows = Rounds(config, load_catalog(config.catalog, topics=config.topics)).first_round()
    models = (
        resolve_models(config, "embedded") if _embedded(config) else _remote(config.teacher, config.judge)
    )
    costs = RowCosts(config, models, prices)
    return {
        "requests": len(rows) * (2 + config.grader_runs),
        "worst": sum(costs.worst(row).total for row in rows),
        "expected": sum(costs.expected(row) for row in rows),
        "note": _with_files(config, "first round" + (MORE_ROUNDS if config.target_accepted else "")),
    }


def _with_files(config: Any, note: str | None) -> str | None:
    """``note``, and where the stage's requests go when they go to batch files (``batch_files``)."""
    if config.batch_files is None:
        return note
    from skillmix.pipelines.batch_files import files_note

    return "; ".join(part for part in (note, files_note(config)) if part)


def _remote(generator: Any, judge: Any, role: str = "teacher", priced: bool = True) -> tuple[Any, Any]:
    """The two models as the run would resolve them, without asking for their keys (the plan needs none)."""
    from skillmix.llm.roles import ResolvedModel, base_url_for, judge_defaults

    model, url = judge_defaults(judge.model, judge.base_url, generator.model, generator.base_url)
    first = ResolvedModel(role, str(generator.model), base_url_for(generator.base_url), priced=priced)
    return first, ResolvedModel("judge", str(model), base_url_for(url))


def _embedded(config: Any) -> bool:
    from skillmix.pipelines.config import uses_embedded

    return uses_embedded(config)


def _eval_sets(experiment: Any, stage: Any) -> tuple[Any, Any]:
    """The ``skillmix eval`` configuration of an evaluation stage and the combinations it asks, per
    (setting, k), drawn as the evaluation draws them before the dataset exists."""
    from skillmix.catalog import load_catalog
    from skillmix.evaluation.sets import eval_sets

    config = experiment.eval_config(stage.student, stage.training_set, with_data=False)
    catalog = load_catalog(config.catalog, topics=config.topics)
    split = catalog.split(config.split_seed)
    return config, eval_sets(catalog, split, config.setting, config.k, config.n, config.seed, None)


def _evaluation(experiment: Any, stage: Any, prices: Any) -> dict[str, Any]:
    from skillmix.pipelines.budget import RowCosts
    from skillmix.pipelines.driver import pipeline_row

    config, sets = _eval_sets(experiment, stage)
    api = stage.training_set == BASE and bool(config.student.base_url)
    combos = [combo for group in sets.values() for combo in group]
    costs = RowCosts(config, _remote(config.student, config.judge, "student", priced=api), prices)
    rows = [pipeline_row(combo) for combo in combos]
    g = config.generations
    return {
        "requests": len(combos) * g * (2 + config.grader_runs),
        "note": _with_files(
            config,
            None
            if api
            else f"{len(combos) * g * config.grader_runs:,} to the judge, the rest to the "
            "student run here (not billed)",
        ),
        "worst": g * sum(costs.worst(row).total for row in rows),
        "expected": g * sum(costs.expected(row) for row in rows),
    }


def _cross_judge(experiment: Any, stage: Any, prices: Any) -> dict[str, Any]:
    """The second judge's requests: ``n`` combinations per cell (at most the cell's), every generation,
    ``grader_runs`` each, at the second judge's prices with the first judge's sampling (its max_tokens)."""
    from skillmix.evaluation.crossjudge import chosen
    from skillmix.pipelines.budget import RowCosts
    from skillmix.pipelines.driver import pipeline_row

    spec = experiment.config.evaluation.cross_judge
    config, sets = _eval_sets(experiment, stage)
    asked = [
        {"combination": c.id, "setting": setting, "k": k}
        for (setting, k), group in sets.items()
        for c in group
    ]
    picked = chosen(asked, spec.n, spec.seed)  # the combinations the stage will re-grade
    rows = [pipeline_row(c) for group in sets.values() for c in group if c.id in picked]
    second = _remote(config.student, type(config.judge)(model=spec.model, base_url=spec.base_url))[1]
    costs = RowCosts(config, (_remote(config.student, config.judge, "student", False)[0], second), prices)
    g = config.generations
    return {
        "requests": len(rows) * g * config.grader_runs,
        "worst": g * sum(costs.worst(row).grade for row in rows),
        "expected": g * sum(costs.expected(row) for row in rows),  # the student here is not priced
        "note": f"second judge {spec.model}",
    }


def _training(experiment: Any, stage: Any) -> dict[str, Any]:
    from skillmix.training.config import TrainConfig
    from skillmix.training.plan import flops_per_token, judge_requests_per_step, worst_request_usd

    data = experiment.recipes[(stage.student, stage.training_set)]
    config = TrainConfig.model_validate(data)
    t, launcher = config.training, experiment.config.launcher
    batch = t.effective_batch_size or t.per_device_train_batch_size * (t.gradient_accumulation_steps or 1) * (
        launcher.num_processes
    )
    tokens = t.max_steps * batch * t.max_length
    per_step = judge_requests_per_step(config, launcher.num_processes)
    judged: dict[str, Any] = {"method": config.method, "judge_requests_per_step": per_step}
    worst = worst_request_usd(config) if per_step else None
    if worst is not None:  # the judge's requests at most (a cache hit is not sent); no expectation: worst
        cost = per_step * t.max_steps * worst
        judged.update(requests=per_step * t.max_steps, worst=cost, expected=cost)
    origin = experiment.config.origin_run(stage.training_set)  # a run started from another: its model's shape
    shape = TrainConfig.model_validate(experiment.recipes[(stage.student, origin)])
    parameters = experiment.config.students[stage.student].parameters or _tiny_parameters(shape)
    if not parameters:
        return {**judged, "note": "GPU-hours not estimated: give students.<name>.parameters"}
    flops, method = flops_per_token(config)
    seconds = flops * parameters * tokens / (launcher.mfu * launcher.peak_tflops * 1e12)
    return {
        **judged,
        "gpu_hours": seconds / 3600,
        "tokens": tokens,
        "parameters": parameters,
        "flops": method,
    }


def _tiny_parameters(config: Any) -> float | None:
    tiny = config.model.tiny
    if tiny is None:
        return None
    h, inter, layers, vocab = tiny.hidden_size, tiny.intermediate_size, tiny.num_layers, tiny.vocab_size
    kv = h * tiny.num_kv_heads // tiny.num_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    return float(2 * vocab * h + layers * per_layer + h)
