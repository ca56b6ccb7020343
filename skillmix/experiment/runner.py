"""``skillmix experiment run FILE``: every stage of :mod:`skillmix.experiment.stages`, checked, planned, run.

Before the first stage runs, everything that can refuse the experiment is checked, so that nothing is paid
for an experiment that cannot finish: the dataset's settings, keys and servers (as ``skillmix dataset``
checks them), every training recipe as the run will see it, a GPU for every student that is not a tiny
model, a Hub token for Hub targets, and that no evaluation combination is one the dataset will train on.
``--plan`` checks none of the keys, servers or GPUs: it prints every stage with its requests, its worst-case
and expected cost and its GPU-hours, and stops.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from skillmix.config import ConfigError
from skillmix.experiment import launch
from skillmix.experiment.config import BASE, ExperimentConfig
from skillmix.experiment.stages import Ledger, Stage, fingerprint, folder_of, stage_names

Log = Callable[[str], None]


class Experiment:
    """The stages of one experiment, their inputs and how to run them."""

    def __init__(self, config: ExperimentConfig) -> None:
        from skillmix.pipelines.config import build_config

        self.config = config
        self.root = config.root()
        self.dataset = build_config(config.dataset.preset, config.dataset.settings)
        self.dataset_folder = folder_of(config, "dataset")
        self.recipes = {run: launch.recipe_data(config, *run, self.dataset_folder) for run in config.runs()}
        self.stages: list[Stage] = []
        for entry in stage_names(config):  # in order: a stage's inputs are the stages before it
            self.stages.append(self._stage(*entry))

    # ------------------------------------------------------------------ fingerprints

    def _stage(self, name: str, kind: str, student: str | None, ts: str | None) -> Stage:
        folder = folder_of(self.config, name)
        stage = Stage(name, folder, "", kind, student, ts)
        stage.fingerprint = fingerprint(self._inputs(stage))
        stage.folder_key = fingerprint(self._folder_key(stage))
        return stage

    def _folder_key(self, stage: Stage) -> Any:
        """What the stage's folder is claimed with by its own command (sizes and steps left out)."""
        if stage.kind == "dataset":
            return self.dataset.fingerprint()
        if stage.kind == "train":
            from skillmix.training.config import TrainConfig

            return TrainConfig.model_validate(self.recipes[(stage.student, stage.training_set)]).fingerprint()
        if stage.kind == "crossjudge":
            judge = self.config.evaluation.cross_judge.model_dump(exclude={"n"})
            judged = self.stage(f"eval/{stage.student}/{stage.training_set}")
            return {"judge": judge, "evaluation": judged.folder_key}
        if stage.kind == "eval":
            sizes = ("k", "setting", "n", "generations", "client")
            settings = {k: v for k, v in self.eval_settings().items() if k not in sizes}
            return {"evaluation": settings, "model": self._model_inputs(stage.student, stage.training_set)}
        return stage.fingerprint

    def _dataset_inputs(self) -> dict[str, Any]:
        d = self.dataset
        return {"config": d.fingerprint(), "sizes": [d.k, d.n, d.n_per_k, d.target_accepted]}

    def _inputs(self, stage: Stage) -> dict[str, Any]:
        config = self.config
        if stage.kind == "dataset":
            return self._dataset_inputs()
        if stage.kind == "publish":
            return {
                "dataset": self._dataset_inputs(),
                "repo": config.hub.dataset_repo,
                "version": config.hub.dataset_version,
            }
        if stage.kind == "train":  # the evaluation's settings are not the training's (an n changed re-runs
            # only the evaluations: its train and all sets are drawn from what the dataset did not draw)
            recipe = {
                k: v
                for k, v in self.recipes[(stage.student, stage.training_set)].items()
                if k != "output_dir"
            }
            recipe["data"] = {k: v for k, v in recipe["data"].items() if k != "evaluation"}
            return {
                "recipe": recipe,
                "launcher": config.launcher.model_dump(exclude={"mfu", "peak_tflops"}),
                "dataset": self._dataset_inputs(),
            }
        if stage.kind == "eval":
            model = self._model_inputs(stage.student, stage.training_set)
            return {"evaluation": self.eval_settings(), "model": model, "dataset": self._dataset_inputs()}
        if stage.kind == "crossjudge":
            judged = self.stage(f"eval/{stage.student}/{stage.training_set}").fingerprint
            return {"cross_judge": config.evaluation.cross_judge.model_dump(), "evaluation": judged}
        evals = [s.fingerprint for s in self.stages if s.kind in ("eval", "crossjudge")]
        if stage.kind == "compare":
            return {"evaluations": evals}
        published = {n: [p.model_dump() for p in s.published] for n, s in config.students.items()}
        return {
            "evaluations": evals,
            "findings": [f.model_dump() for f in config.finding_list()],
            "comparisons": [c.model_dump() for c in config.comparisons],
            "published": published,
            "labels": {n: t.label for n, t in config.training_sets.items()},
        }

    def _model_inputs(self, student: str, ts: str) -> Any:
        if ts == BASE:
            spec = self.config.students[student]
            return {"base": spec.base, "base_url": spec.base_url}
        return {"trained": self.stage(f"train/{student}/{ts}").fingerprint}

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def eval_settings(self) -> dict[str, Any]:
        """The evaluation's settings: the dataset's protocol and judge, then the experiment's own."""
        from skillmix.evaluation.config import DRAWN
        from skillmix.llm.roles import judge_defaults
        from skillmix.pipelines.config import ProtocolConfig

        data = self.dataset.model_dump()
        shared = {
            key: data[key] for key in ProtocolConfig.model_fields if key not in DRAWN and key != "client"
        }
        teacher, judge = data["teacher"], dict(data["judge"])
        model, url = judge_defaults(
            judge.get("model"), judge.get("base_url"), teacher.get("model"), teacher.get("base_url")
        )
        shared["judge"] = {**judge, "model": model, "base_url": url}
        own = dict(self.config.evaluation.settings)
        if "judge" in own:
            own["judge"] = {**shared["judge"], **own["judge"]}
        taken = [key for key in ("data", "eval_set") if key in own]
        taken += [f"student.{key}" for key in ("model", "base_url") if key in (own.get("student") or {})]
        if taken:
            raise ConfigError(f"evaluation.settings.{taken[0]}: the experiment sets it (leave it out)")
        return {**shared, **own}

    def eval_config(self, student: str, training_set: str, with_data: bool = True) -> Any:
        """The ``skillmix eval`` configuration of one model: the evaluation settings, the model (the base,
        or the stage's trained folder, with the settings' own student sampling), and the dataset's eval set
        (``--data``; ``with_data=False`` before the dataset exists: its seed, as ``--data`` would give)."""
        from skillmix.evaluation.config import build_eval_config

        settings = dict(self.eval_settings())
        spec = self.config.students[student]
        if training_set == BASE:
            model = {"model": spec.base, "base_url": spec.base_url}
        else:
            model = {"model": str(self.stage(f"train/{student}/{training_set}").folder)}
        settings["student"] = {**(settings.get("student") or {}), **model}
        if with_data:
            settings["data"] = str(self.dataset_folder)
        else:
            settings.setdefault("seed", self.dataset.seed)
        return build_eval_config(None, settings)

    # ------------------------------------------------------------------ running

    def run(self, log: Log) -> None:
        ledger = Ledger(self.root)
        pending = [s for s in self.stages if not ledger.done(s)]
        self.check(pending, log)
        for stage in self.stages:
            if ledger.done(stage):
                log(f"[{stage.name}] unchanged since its last run: skipped")
                continue
            log(f"[{stage.name}] {ledger.status(stage)}: running")
            started = time.monotonic()
            ledger.start(stage)
            self._run(stage, log)
            ledger.finish(stage, time.monotonic() - started)
        log(f"report: {self.root / 'report' / 'report.md'}")

    def check(self, pending: list[Stage], log: Log) -> None:
        """Everything that can refuse the pending stages, before the first paid request (module doc)."""
        from skillmix.experiment import checks

        checks.check(self, pending, log)

    def _run(self, stage: Stage, log: Log) -> None:
        from skillmix.experiment import report, steps

        if stage.kind == "dataset":
            steps.dataset(self, log)
        elif stage.kind == "publish":
            steps.publish(self, log)
        elif stage.kind == "train":
            launch.train(self, stage, log)
        elif stage.kind == "eval":
            steps.evaluate(self, stage, log)
        elif stage.kind == "crossjudge":
            steps.cross_judge(self, stage, log)
        elif stage.kind == "compare":
            steps.compare(self, stage)
        else:
            report.write_report(self, stage.folder)
            if self.config.hub.results_repo:
                steps.push_report(self, stage.folder, log)

    def evaluations(self, kind: str = "eval") -> list[Stage]:
        """The evaluation stages (``crossjudge``: their second judge's)."""
        return [s for s in self.stages if s.kind == kind]


def run_experiment(config: ExperimentConfig, plan: bool = False, log: Log | None = None) -> Experiment:
    """Run (or, with ``plan``, print the plan of) the experiment ``config``."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    experiment = Experiment(config)
    if plan:
        from skillmix.experiment.plan import plan_lines

        print("\n".join(plan_lines(experiment)))
        return experiment
    experiment.run(log)
    return experiment
