"""A whole dataset build: the checks, the rounds of the pipeline under the cap and the target, the folder.

:func:`run_dataset` is what ``skillmix dataset`` and ``make dataset`` call. Every check that can fail comes
before the output folder is touched (and ``dry_run`` stops after the estimate, before any request). Then
:class:`Rounds` runs the pipeline over the planned combinations:

* under ``--max-usd``, each round starts only the rows whose worst case fits next to what is spent and
  reserved (:mod:`skillmix.pipelines.budget`); when not one more row fits, the rows left are ``failed``
  with status ``budget``, never started;
* under ``--target-accepted N``, rounds are drawn until N rows per k are kept, each sized by the acceptance
  seen so far; the rows kept beyond N go to the ``surplus`` config (:mod:`skillmix.pipelines.output`).

Reliability lives beneath distilabel: the per-request cache in ``OUT/.skillmix/cache.sqlite`` makes a
re-run after a crash pay for nothing already done, and every row ends as kept, rejected or failed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillmix.catalog import Catalog, load_catalog
from skillmix.llm.cache import RequestCache
from skillmix.llm.prices import PriceTable
from skillmix.pipelines.budget import RowCost, RowCosts, affordable, next_round_size
from skillmix.pipelines.config import ConfigError, DatasetConfig, uses_embedded
from skillmix.pipelines.dataset import ResolvedModel, check_reachable, resolve_models, run_pipeline
from skillmix.pipelines.estimate import estimate
from skillmix.pipelines.folder import OutputFolder
from skillmix.pipelines.interrupt import Guard, Interrupted, guarded
from skillmix.pipelines.output import CACHE_FILE, RunResult
from skillmix.sampling import MAX_ENUMERATED, Combination, count_combinations, eligible, sample_combinations

Log = Callable[[str], None]


def run_dataset(
    config: DatasetConfig, out: str | Path, log: Log = print, dry_run: bool = False
) -> RunResult | None:
    """Build the dataset folder ``out`` (or, with ``dry_run``, print the plan and stop before any request)."""
    started = time.time()
    catalog = load_catalog(config.catalog, topics=config.topics)
    split = catalog.split(config.split_seed)
    _check_k(config, catalog, split)
    prices = load_prices(config)
    embedded = uses_embedded(config)
    if not embedded:  # every check that can fail comes before the output folder is touched
        for model in resolve_models(config):
            check_priced(config, model, prices)
            if not dry_run:
                check_reachable(model)
    if dry_run:
        models = resolve_models(config, "embedded" if embedded else None)
        log(estimate(config, models, Rounds(config, catalog, models, prices).first_round(), prices))
        return None
    folder = OutputFolder(Path(out))
    folder.claim(config)  # one run per folder; refuses another run's data and names broken state
    with contextlib.ExitStack() as stack:
        guard = stack.enter_context(guarded(folder.work))
        if embedded:
            config, url = _start_embedded(config, folder, stack, log)
        models = resolve_models(config, url if embedded else None)
        result = RunResult(config=config, models=models, split=split)
        Rounds(config, catalog, models, prices, folder, result, log, guard).run()
    result.wall_seconds = time.time() - started
    folder.write(result)
    return result


def _check_k(config: DatasetConfig, catalog: Catalog, split: Any) -> None:
    for k in config.k:
        eligible_skills = len(catalog.skills) if k == 1 else len(split.training_skills)
        if k > eligible_skills:
            raise ConfigError(f"K={k} exceeds the {eligible_skills} skills eligible for D_SKILL-MIX({k})")


def load_prices(config: Any) -> PriceTable:
    try:
        return PriceTable.load(config.prices)
    except FileNotFoundError:
        raise ConfigError(f"price file {config.prices} not found") from None


def check_priced(config: Any, model: ResolvedModel, prices: PriceTable) -> None:
    """Under a cap, a model of unknown price would make the cap meaningless: refuse it by name."""
    if config.client.max_usd is not None and not model.free and not prices.is_priced(model.model):
        raise ConfigError(
            f"--max-usd needs the price of the {model.role} model {model.model!r}, which is not known: "
            "give it with --prices FILE (YAML: `MODEL: {input: USD_PER_1M, output: USD_PER_1M}`; "
            "0 for a free local server)"
        )


def _start_embedded(config: DatasetConfig, folder: OutputFolder, stack: contextlib.ExitStack, log: Log):
    from skillmix.llm.embedded import EmbeddedServer

    log(
        "No OPENAI_API_KEY, base URL or model given: the embedded Gemma 3 270M model (llama.cpp) is "
        "teacher and judge. Its texts will be poor: a smoke run, not a dataset for training."
    )
    server = stack.enter_context(EmbeddedServer(log_path=folder.work / "embedded-server.log"))
    # llama.cpp answers one request at a time: queueing more only risks client timeouts
    client = config.client.model_copy(update={"concurrency": 1, "timeout": max(config.client.timeout, 600.0)})
    return config.model_copy(update={"client": client}), server.base_url


def draw(config: DatasetConfig, catalog: Catalog, k: int, start: int, count: int) -> list[Combination]:
    """Combinations ``start .. start+count`` of the balanced, seeded sequence for ``k``."""
    split = catalog.split(config.split_seed)
    setting = "k1" if k == 1 else "train"
    skills, topics = eligible(catalog, setting, split)
    total = count_combinations(len(skills), len(topics), k)
    wanted = min(total, start + count)
    if wanted <= start:
        return []
    sample = sample_combinations(catalog, k, wanted, setting=setting, seed=config.seed, split=split)
    return list(sample)[start:wanted]


class Rounds:
    """The rounds of one build: what to draw, which rows the cap lets start, when to stop."""

    def __init__(
        self,
        config: DatasetConfig,
        catalog: Catalog,
        models: tuple[ResolvedModel, ...],
        prices: PriceTable,
        folder: OutputFolder | None = None,
        result: RunResult | None = None,
        log: Log = print,
        guard: Guard | None = None,
    ) -> None:
        self.config, self.catalog, self.models = config, catalog, models
        self.folder, self.result, self.log, self.guard = folder, result, log, guard
        self.costs = RowCosts(config, models, prices)
        self.offsets = dict.fromkeys(config.k, 0)
        self.worst: dict[str, RowCost] = {}

    def first_round(self) -> list[Combination]:
        target = self.config.target_accepted
        sizes = {}
        for k in self.config.k:
            planned = self.config.count_for(k)
            fixed = planned if planned is not None else MAX_ENUMERATED
            sizes[k] = (
                fixed if target is None else next_round_size(target, 0, 0, self.config.expected_acceptance)
            )
        return self._draw(sizes)

    def next_round(self) -> list[Combination]:
        """More combinations while ``--target-accepted`` is unmet (none once it is met for every k)."""
        target, result = self.config.target_accepted, self.result
        if target is None or result is None:
            return []
        prior = self.config.expected_acceptance
        sizes = {k: next_round_size(target, result.kept(k), result.graded(k), prior) for k in self.config.k}
        return self._draw(sizes)

    def _draw(self, sizes: dict[int, int]) -> list[Combination]:
        by_k = []
        for k, count in sizes.items():
            batch = draw(self.config, self.catalog, k, self.offsets[k], count) if count else []
            self.offsets[k] += len(batch)
            by_k.append(batch)
            if self.result is not None:
                self.result.drawn.extend(c.id for c in batch)
        # interleaved across k, so that a cap that stops the run stops every k alike
        return [c for group in zip_longest_nonempty(by_k) for c in group]

    def run(self) -> None:
        pending = self.first_round()
        self.log(estimate(self.config, self.models, pending, self.costs.prices))
        try:
            while pending:
                pending = self._start_affordable(pending)
                if pending is None:
                    return  # the cap is reached
                if self.guard is not None:
                    self.guard.check()
                if not pending:
                    pending = self.next_round()
        except Interrupted as exc:
            assert self.result is not None
            exc.done, exc.total = len(self.result.rows) + (exc.done or 0), len(self.result.drawn)
            raise

    def _start_affordable(self, pending: list[Combination]) -> list[Combination] | None:
        """Run the pipeline over the rows the cap lets start; the rest wait (None: the cap is reached)."""
        assert self.folder is not None and self.result is not None
        cap = self.config.client.max_usd
        for combo in pending:
            self.worst.setdefault(combo.id, self.costs.worst(combo))
        available = None if cap is None else cap - self._committed()
        count = affordable([self.worst[c.id].total for c in pending], available)
        if count == 0:
            self.result.add([self._not_started(c, available or 0.0) for c in pending])
            self.log(
                f"Spending limit ${cap:.2f}: {len(pending)} rows not started (their worst case does not fit)."
            )
            return None
        start, rest = pending[:count], pending[count:]
        worst = {c.id: self.worst[c.id].to_dict() for c in start} if cap is not None else None
        self.result.add(run_pipeline(self.config, start, self.models, self.folder.work, worst, self.guard))
        return rest

    def _committed(self) -> float:
        assert self.folder is not None
        cache = RequestCache(self.folder.work / CACHE_FILE)
        try:
            return cache.committed_usd()
        finally:
            cache.close()

    def _not_started(self, combo: Combination, available: float) -> dict[str, Any]:
        worst = self.worst[combo.id].total
        reason = (
            f"budget: not started, its worst case ${worst:.4f} is more than the ${max(available, 0):.4f} left"
        )
        return {**combo.to_dict(), "outcome": "failed", "status": "budget", "failure_reason": reason}


def zip_longest_nonempty(groups: list[list[Combination]]) -> list[list[Combination]]:
    """``[[a1, a2], [b1]]`` -> ``[[a1, b1], [a2]]``: one from each group in turn."""
    longest = max((len(g) for g in groups), default=0)
    return [[g[i] for g in groups if i < len(g)] for i in range(longest)]
