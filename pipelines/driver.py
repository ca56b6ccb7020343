"""The one run driver: what every run of the pipeline does around it, whatever the rows are.

``skillmix dataset`` (:mod:`skillmix.pipelines.run`) and ``skillmix eval`` (:mod:`skillmix.evaluation.run`)
are the same run with other rows (the combinations of a build, drawn in rounds; the generations of an eval
set) and other outputs (a dataset folder; samples and results). Both go through these steps, in order:

1. :func:`check_models`: every model priced under a cap and its server answering, before the folder is
   touched (the models themselves come from :mod:`skillmix.llm.roles`, the one resolution of a role);
2. :func:`claim`: the output folder taken and locked for this run (new, empty, or holding this same run:
   then it resumes from its request cache);
3. :class:`Driver`: rows started under the spending cap (each row's worst case must fit beside what is
   spent and reserved; when not one more fits the rest are ``budget``, never started), the pipeline run
   over them (:func:`skillmix.pipelines.dataset.run_pipeline`), every row back with its outcome;
4. the caller accounts (:mod:`skillmix.pipelines.usage`) and writes its outputs atomically.

Rows are made once, from the run's catalog, by :func:`pipeline_row` and keep that form to the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from skillmix.config import ConfigError
from skillmix.dataset_folder.layout import CACHE_FILE
from skillmix.dataset_folder.writer import OutputFolder
from skillmix.llm.cache import RequestCache
from skillmix.llm.prices import PriceTable
from skillmix.llm.roles import ResolvedModel, check_priced, check_reachable
from skillmix.pipelines.budget import RowCost, RowCosts, affordable
from skillmix.pipelines.config import ProtocolConfig
from skillmix.pipelines.dataset import run_pipeline
from skillmix.pipelines.interrupt import Guard
from skillmix.sampling import Combination

Log = Callable[[str], None]
BATCH_NOTES = (("invalid", "invalid requests"), ("unreadable", "output lines unreadable"),
               ("lost", "batches lost by the provider"))  # fmt: skip
T = TypeVar("T")


def pipeline_row(combo: Combination, **extra: Any) -> dict[str, Any]:
    """A combination as a row of the pipeline: its columns, its skills as records, and ``extra``.

    ``combination`` names the combination the row asks about (its worst case is priced once per
    combination); a dataset row is its combination, an evaluation has one row per generation.
    """
    records = [skill.to_dict() for skill in combo.skills]
    return {**combo.to_dict(), "combination": combo.id, "skill_records": records, **extra}


def interleave(groups: Iterable[list[T]]) -> list[T]:
    """``[[a1, a2], [b1]]`` -> ``[a1, b1, a2]``: one from each group in turn, so that a cap that stops a
    run stops every group (each k, each setting) alike."""
    groups = list(groups)
    longest = max((len(g) for g in groups), default=0)
    return [g[i] for i in range(longest) for g in groups if i < len(g)]


def check_models(
    config: ProtocolConfig, models: Iterable[ResolvedModel], prices: PriceTable, reach: bool = True
) -> None:
    """Refuse, by name, a model of unknown price under a cap and (``reach``) a server that does not answer."""
    for model in models:
        check_priced(config.client.max_usd, model, prices)
        batched = config.settings_of(model.role).batch
        if batched and config.batch_files is not None:  # its requests go to files: no server is asked
            from skillmix.pipelines.batch_files import check_file_role

            check_file_role(model)
            continue
        if reach:
            check_reachable(model)
        if batched:
            check_batchable(model, reach)


def check_batchable(model: ResolvedModel, reach: bool) -> None:
    """A batched role needs a remote chat model whose server serves a batch API (refused by name)."""
    from skillmix.llm.batch import BatchAPIClient
    from skillmix.llm.roles import base_url_for

    flag = f"--{model.role}-batch"
    if model.local:
        raise ConfigError(f"{flag}: the {model.role} {model.describe()} runs here and has no batch API")
    if model.mode == "completion":
        raise ConfigError(f"{flag}: batch mode sends chat requests; the {model.role} is in completion mode")
    if reach:
        BatchAPIClient(base_url_for(model.base_url), os.environ.get(model.api_key_env)).check()


def load_prices(config: ProtocolConfig) -> PriceTable:
    try:
        return PriceTable.load(config.prices)
    except FileNotFoundError:
        raise ConfigError(f"price file {config.prices} not found") from None


def claim(out: str | Path, kind: str, fingerprint: str, record: dict[str, Any]) -> OutputFolder:
    """Take the folder ``out`` for a run of ``kind`` (``dataset``, ``evaluation``), or refuse by name."""
    folder = OutputFolder(Path(out))
    folder.claim(kind, fingerprint, record)
    return folder


class Driver:
    """Runs rows through the pipeline under the spending cap, into one folder's work state."""

    def __init__(
        self,
        config: ProtocolConfig,
        models: tuple[ResolvedModel, ResolvedModel],
        prices: PriceTable,
        folder: OutputFolder,
        guard: Guard | None = None,
        log: Log = print,
    ) -> None:
        self.config, self.models, self.folder, self.guard, self.log = config, models, folder, guard, log
        self.prices = prices
        self.batch_stats: dict[str, Any] | None = None
        self.costs = RowCosts(config, models, prices)
        self.worst: dict[str, RowCost] = {}  # by combination: its generations cost alike

    @property
    def batched(self) -> bool:
        return bool(self.config.generator.batch or self.config.judge.batch)

    def run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every row through the pipeline, as many at a time as the cap lets start; each row comes back
        (kept, rejected or failed; ``budget`` when the cap never let it start)."""
        if self.batched:
            return self.run_batched(rows)
        done: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] | None = rows
        while pending:
            finished, pending = self.start(pending)
            done.extend(finished)
            if pending and self.guard is not None:
                self.guard.check()
        return done

    def run_batched(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Batch mode (:mod:`skillmix.pipelines.batches`): pass after pass, each sending what the rows
        still need as batches, until a pass needs nothing; its rows are the run's."""
        from skillmix.llm.batch import BatchRefused
        from skillmix.pipelines.batch_files import run_batch_files, unwritten
        from skillmix.pipelines.batches import Batcher
        from skillmix.pipelines.interrupt import Interrupted

        worst = None
        if self.config.client.max_usd is not None:  # each row's worst case, reserved by its first line
            for row in rows:
                self.worst.setdefault(row["combination"], self.costs.worst(row))
            worst = {row["id"]: self.worst_of(row).to_dict() for row in rows}
        if self.config.batch_files is not None:  # the requests go to files for any engine, not to an API
            return run_batch_files(self, rows, worst)
        unwritten(self.folder.work, self.log)  # lines left in batch files by an earlier run: to the API now
        batcher = Batcher(self.folder.work, self.prices, self.config.client.max_usd,
                          self.config.client.max_retries, self.log)  # fmt: skip
        try:
            batcher.reattach([self._endpoint(m) for m in self.models if self._batched(m)])
            batcher.wait()
            stages = iter(("round1", "round2", "grade", "retry"))
            while True:
                produced = run_pipeline(self.config, rows, self.models, self.folder.work, worst, self.guard)
                if not batcher.wanted():
                    break
                stage = next(stages, "retry")
                sent = batcher.submit(stage)
                self.log(
                    f"{stage}: {sent} requests sent in batches; waiting for them (Ctrl-C leaves them running)"
                )
                batcher.wait()
            batcher.release_rows()
            self.batch_stats = stats = batcher.stats
            if stats["batches"]:
                self.log(
                    f"batches: {stats['batches']} created for {stats['lines']} requests; {stats['retried']} "
                    f"lines failed and were sent again, {stats['failed']} failed, {stats['refused']} "
                    f"not sent (the cap); ${stats['saved_usd']:.4f} saved against direct prices"
                    + "".join(f"; {stats[k]} {what}" for k, what in BATCH_NOTES if stats.get(k))
                )
            return produced
        except (Interrupted, KeyboardInterrupt, BatchRefused):
            if batcher.cache.batch_records(open_only=True):
                self.log(
                    "the batches in flight keep running (they are paid work): the same command collects "
                    f"them again; `skillmix batches cancel {self.folder.path}` cancels them"
                )
            raise
        finally:
            batcher.close()

    def _batched(self, model: ResolvedModel) -> bool:
        return self.config.settings_of(model.role).batch

    @staticmethod
    def _endpoint(model: ResolvedModel) -> dict[str, Any]:
        from skillmix.llm.client import Endpoint

        return Endpoint(model.model, model.base_url, model.api_key_env).batch_target()

    def start(
        self, pending: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Run the rows of ``pending`` whose worst case fits under the cap; returns the rows done and those
        still waiting (None: the cap is reached, and the rows done include the ones it never started).
        In batch mode the cap holds row by row too, at the batch price: a row's first line reserves the row's
        worst case before its batch is sent (:meth:`skillmix.pipelines.batches.Batcher.submit`)."""
        if self.batched:
            return self.run_batched(pending), []
        cap = self.config.client.max_usd
        for row in pending:
            self.worst.setdefault(row["combination"], self.costs.worst(row))
        available = None if cap is None else cap - self._committed()
        count = affordable([self.worst_of(row).total for row in pending], available)
        if count == 0:
            self.log(
                f"Spending limit ${cap:.2f}: {len(pending)} rows not started (their worst case does not fit)."
            )
            return [self._not_started(row, available or 0.0) for row in pending], None
        start, rest = pending[:count], pending[count:]
        worst = {row["id"]: self.worst_of(row).to_dict() for row in start} if cap is not None else None
        return run_pipeline(self.config, start, self.models, self.folder.work, worst, self.guard), rest

    def worst_of(self, row: dict[str, Any]) -> RowCost:
        return self.worst[row["combination"]]

    def _committed(self) -> float:
        cache = RequestCache(self.folder.work / CACHE_FILE)
        try:
            return cache.committed_usd()
        finally:
            cache.close()

    def _not_started(self, row: dict[str, Any], available: float) -> dict[str, Any]:
        worst = self.worst_of(row).total
        reason = (
            f"budget: not started, its worst case ${worst:.4f} is more than the ${max(available, 0):.4f} left"
        )
        return {
            **row,
            "outcome": "failed",
            "status": "budget",
            "failure_reason": reason,
            "round1_status": "budget",
            "round1_error": reason,
        }
