"""An experiment file: the paper's loop from data to findings, declared as data (defaults < YAML < flags).

    name: paper
    dataset:       {preset: paper, settings: {k: [1, 2, 3], n: 5000, teacher: {model: gpt-4o}}}
    training_sets: {D123: {configs: [k1, k2, k3], label: "D(1,2,3)", seeds: [0, 1, 2]}, ...}
    students:      {mistral-7b: {recipe: training/recipes/mistral-7b-instruct-v0.2/paper.yaml,
                                 base: mistralai/Mistral-7B-Instruct-v0.2, parameters: 7.24e9}}
    evaluation:    {settings: {k: [2, 3, 4, 5], setting: [held-out], n: 100, generations: 3},
                    cross_judge: {model: claude-x, base_url: ..., n: 30}}    # optional: a second judge
    launcher:      {num_processes: 4, accelerate_config: training/accelerate/fsdp.yaml}
    hub:           {dataset_repo: null, models: null, results_repo: null}
    findings:      [{name: "2", statement: ..., family: [{a: D1, b: D123, setting: [held-out], k: [2, 3]}],
                     beside: [...], data_efficiency: false}]      # none: the paper's three (findings.PAPER)
    comparisons:   [{a: SFT, b: DPO, setting: [held-out], k: [2, 3, 4, 5]}]   # differences, no verdict

``dataset.settings`` are the settings of ``skillmix dataset`` (its preset's keys; validated by its own
config), ``evaluation.settings`` those of ``skillmix eval`` but the student and the data, which the runner
fills. Unknown keys are refused with the file and the key named. The role flags ``--teacher-model``,
``--teacher-base-url``, ``--judge-model``, ``--judge-base-url``, ``--cross-judge-base-url`` and ``--out``
override the file, so that one experiment runs against any server (the evaluation's judge is the
dataset's unless it names one).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from skillmix.config import ConfigError, build, read_yaml
from skillmix.experiment.findings import PAPER, Contrast, Finding, efficiency_problem

_STRICT = ConfigDict(extra="forbid")
BASE = "base"  # the training-set name of a student before fine-tuning
SEED_MARK = "@seed"  # a run of a training set with seeds: <set>@seed<N>


class DatasetPlan(BaseModel):
    model_config = _STRICT

    preset: str = Field("smoke", description="a `skillmix dataset` preset: smoke, paper, or a YAML file")
    settings: dict[str, Any] = Field(default_factory=dict, description="`skillmix dataset` settings")


class TrainingSet(BaseModel):
    """A union of the dataset's configs, optionally subsampled per config (seeded, by the recipe)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    configs: list[str] = Field(min_length=1)
    subsample: dict[str, int] = Field(default_factory=dict)
    start_from: str | None = Field(
        None,
        alias="from",
        description="start from the model another set of the same student trained (DPO and GRPO from the "
        "SFT model, as the alignment handbook does); none: the student's base. With seeds, seed N starts "
        "from the other set's seed N",
    )
    label: str | None = Field(None, description="how the report names it, e.g. D(1,2,3)")
    method: Literal["sft", "dpo", "grpo"] | None = Field(
        None, description="sft, dpo (configs: [preference]) or grpo (none: the recipe's method)"
    )
    recipe: str | None = Field(None, description="the recipe of this set (none: the student's)")
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="train (and evaluate) one model per seed: the recipe's training.seed (the order of the "
        "rows, anything initialised, a tiny model's weights); the rows stay the same. The report gives each "
        "cell's mean over the seeds and their spread, and decides on the seed-averaged paired differences",
    )

    @model_validator(mode="after")
    def _distinct_seeds(self) -> TrainingSet:
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.seeds} repeats a seed")
        return self


class Published(BaseModel):
    """A figure of the paper, printed beside ours (``model``: ``base`` or a training-set name)."""

    model_config = _STRICT

    setting: str
    k: int
    model: str
    value: float = Field(ge=0, le=1)
    metric: str = "full_marks"
    source: str = "arXiv 2409.19808"


class Student(BaseModel):
    model_config = _STRICT

    recipe: str = Field(description="a training recipe (training/recipes/<model>/<variant>.yaml)")
    base: str | None = Field(None, description="the model evaluated as the base (none: no base run)")
    base_url: str | None = Field(None, description="the OpenAI-compatible server of an API base model")
    training_sets: list[str] | None = Field(None, description="the sets it trains on (none: all)")
    parameters: float | None = Field(None, gt=0, description="for the GPU-hours estimate")
    published: list[Published] = Field(default_factory=list)


class CrossJudge(BaseModel):
    """A second judge (another model family) re-grading ``n`` combinations of every evaluation cell."""

    model_config = _STRICT

    model: str = Field(description="the second judge's model")
    base_url: str | None = Field(None, description="its OpenAI-compatible server (none: OpenAI's)")
    api_key_env: str = Field("OPENAI_API_KEY", description="the environment variable holding its key")
    n: int = Field(ge=1, description="combinations re-graded per setting x k (all their generations)")
    seed: int = Field(0, description="which combinations: the same ones in every evaluation")


class Evaluation(BaseModel):
    model_config = _STRICT

    settings: dict[str, Any] = Field(default_factory=dict, description="`skillmix eval` settings")
    cross_judge: CrossJudge | None = Field(
        None, description="re-grade a share of every evaluation with a second judge (agreement, verdicts)"
    )


class Launcher(BaseModel):
    model_config = _STRICT

    num_processes: int = Field(1, ge=1, description="training processes (GPUs; CPU processes without one)")
    accelerate_config: str | None = Field(None, description="an accelerate config (training/accelerate/)")
    mfu: float = Field(0.35, gt=0, le=1, description="assumed model FLOPs utilisation, for the plan")
    peak_tflops: float = Field(989.0, gt=0, description="bf16 dense peak of one GPU (H100 SXM: 989)")


class HubTargets(BaseModel):
    model_config = _STRICT

    dataset_repo: str | None = Field(None, description="publish the dataset to this repo")
    dataset_version: str = "v1.0.0"
    models: str | None = Field(None, description="push each fine-tuned student to <models>/<student>-<set>")
    results_repo: str | None = Field(None, description="the report, as one tagged commit of this repo")
    private: bool = False


class ExperimentConfig(BaseModel):
    model_config = _STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    out: str | None = Field(None, description="where the stages write (default runs/<name>)")
    dataset: DatasetPlan = Field(default_factory=DatasetPlan)
    training_sets: dict[str, TrainingSet] = Field(min_length=1)
    students: dict[str, Student] = Field(min_length=1)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    launcher: Launcher = Field(default_factory=Launcher)
    hub: HubTargets = Field(default_factory=HubTargets)
    findings: list[Finding] | None = Field(
        None, description="the findings and the contrasts that decide them (none: the paper's three)"
    )
    comparisons: list[Contrast] = Field(
        default_factory=list, description="other contrasts, reported as differences with no verdict"
    )
    source: str | None = Field(None, description="the file these values came from")

    @model_validator(mode="after")
    def _names(self) -> ExperimentConfig:
        if BASE in self.training_sets:
            raise ValueError(f"training_sets: {BASE!r} names a student before fine-tuning; rename the set")
        for name in self.training_sets:
            if "@" in name:
                raise ValueError(f"training_sets: {name!r}: '@' marks a seed's run ({name}{SEED_MARK}0)")
        for name, student in self.students.items():
            unknown = set(student.training_sets or []) - set(self.training_sets)
            if unknown:
                raise ValueError(f"students.{name}.training_sets: no training set {sorted(unknown)[0]!r}")
        for name, tset in self.training_sets.items():
            self._check_start(name, tset)
        known = {*self.training_sets, BASE}
        for where, contrast in self._declared():
            unknown = [n for n in (contrast.a, contrast.b) if n not in known]
            if unknown:
                raise ValueError(f"{where}: no training set {unknown[0]!r}")
        for finding in self.findings or []:
            for contrast in finding.family if finding.data_efficiency else []:
                if problem := efficiency_problem(self, contrast):
                    raise ValueError(f"findings {finding.name}: {problem}")
        return self

    def _check_start(self, name: str, tset: TrainingSet) -> None:
        source = tset.start_from
        if source is None:
            return
        where = f"training_sets.{name}.from"
        if source not in self.training_sets:
            raise ValueError(f"{where}: no training set {source!r}")
        chain, current = [name], source
        while current is not None:
            if current in chain:
                raise ValueError(f"{where}: {' -> '.join([*chain, current])} goes round in a circle")
            chain.append(current)
            current = self.training_sets[current].start_from
        if self.training_sets[source].seeds not in (None, tset.seeds):
            raise ValueError(
                f"{where}: {source} is trained with seeds {self.training_sets[source].seeds}: give {name} "
                "the same seeds (seed N starts from its seed N)"
            )
        for student_name, student in self.students.items():
            sets = student.training_sets or list(self.training_sets)
            if name in sets and source not in sets:
                raise ValueError(f"{where}: students.{student_name} trains {name} but not {source}")

    def _declared(self) -> list[tuple[str, Contrast]]:
        """The contrasts the file itself names (the paper's default findings may name absent sets)."""
        found = [(f"comparisons[{i}]", c) for i, c in enumerate(self.comparisons)]
        for finding in self.findings or []:
            found += [(f"findings {finding.name}", c) for c in [*finding.family, *finding.beside]]
        return found

    def finding_list(self) -> list[Finding]:
        return self.findings if self.findings is not None else [Finding(**f) for f in PAPER]

    def sets_of(self, student: str) -> set[str]:
        """The training sets a student is evaluated on, ``base`` included when it has one."""
        spec = self.students[student]
        return set(spec.training_sets or self.training_sets) | ({BASE} if spec.base else set())

    def root(self) -> Path:
        return Path(self.out or Path("runs") / self.name)

    def runs(self) -> list[tuple[str, str]]:
        """Every (student, run) to train, in the file's order: a run is a training set's name, or
        ``<set>@seed<N>`` for each seed of a set with ``seeds``."""
        return [
            (name, run)
            for name, student in self.students.items()
            for ts in self._sources_first(student.training_sets or list(self.training_sets))
            for run in self.replicas(ts)
        ]

    def _sources_first(self, names: list[str]) -> list[str]:
        """``names`` in the file's order, but a set that starts ``from`` another after that one."""
        ordered: list[str] = []

        def add(name: str) -> None:
            source = self.training_sets[name].start_from
            if source is not None and source in names:
                add(source)
            if name not in ordered:
                ordered.append(name)

        for name in names:
            add(name)
        return ordered

    def source_run(self, run: str) -> str | None:
        """The run whose trained model ``run`` starts from (``from``), None for the base."""
        source = self.training_sets[self.set_of(run)].start_from
        if source is None:
            return None
        seed = self.seed_of(run)
        return source if seed is None else f"{source}{SEED_MARK}{seed}"

    def origin_run(self, run: str) -> str:
        """The first run of ``run``'s ``from`` chain: the one that starts from the student's own model."""
        while (source := self.source_run(run)) is not None:
            run = source
        return run

    def replicas(self, training_set: str) -> list[str]:
        """The runs of a training set (``base``: itself)."""
        seeds = None if training_set == BASE else self.training_sets[training_set].seeds
        return [training_set] if seeds is None else [f"{training_set}{SEED_MARK}{s}" for s in seeds]

    @staticmethod
    def set_of(run: str) -> str:
        """The training set of a run (``D123@seed1`` -> ``D123``)."""
        return run.split(SEED_MARK)[0]

    @staticmethod
    def seed_of(run: str) -> int | None:
        """The seed of a run of a set with ``seeds`` (None for a set without)."""
        return int(run.split(SEED_MARK)[1]) if SEED_MARK in run else None

    def label(self, run: str) -> str:
        """How the report names a training set, or one seed's run of it (``D(1,2,3) seed 1``)."""
        if run == BASE:
            return BASE
        name, seed = self.set_of(run), self.seed_of(run)
        label = self.training_sets[name].label or name
        return label if seed is None else f"{label} seed {seed}"

    def repo_of(self, student: str, run: str) -> str | None:
        """The Hub repo of a fine-tuned run with ``hub.models``: ``<models>/<student>-<set>[-seed<N>]``."""
        if not self.hub.models:
            return None
        return f"{self.hub.models}/{student}-{run.replace(SEED_MARK, '-seed')}"


ROLE_FLAGS = {  # flag destination -> (section, role, key)
    "teacher_model": ("teacher", "model"),
    "teacher_base_url": ("teacher", "base_url"),
    "judge_model": ("judge", "model"),
    "judge_base_url": ("judge", "base_url"),
}


def add_experiment_flags(parser: argparse.ArgumentParser) -> None:
    for dest, (role, key) in ROLE_FLAGS.items():
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, default=None, help=f"the {role}'s {key.replace('_', ' ')}")
    parser.add_argument(
        "--cross-judge-base-url", default=None, help="the second judge's server (evaluation.cross_judge)"
    )
    parser.add_argument("--out", default=None, help="where the stages write (default runs/<name>)")


def build_experiment(path: str | Path, args: argparse.Namespace | None = None) -> ExperimentConfig:
    """The experiment of ``path`` with the role flags and ``--out`` of ``args`` applied (module docstring)."""
    data = read_yaml(path, "experiment")
    source = f"experiment {path}"
    build(ExperimentConfig, data, source)  # an error in the file names the file
    data = {**data, "source": str(path)}
    if args is not None:
        data = _apply_flags(data, args)
    return build(ExperimentConfig, data, "flags")


def _apply_flags(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    dataset = dict(data.get("dataset") or {})
    settings = dict(dataset.get("settings") or {})
    evaluation = dict(data.get("evaluation") or {})
    eval_settings = dict(evaluation.get("settings") or {})
    for dest, (role, key) in ROLE_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        settings[role] = {**(settings.get(role) or {}), key: value}
        if role == "judge":
            eval_settings["judge"] = {**(eval_settings.get("judge") or {}), key: value}
    dataset["settings"], evaluation["settings"] = settings, eval_settings
    second = getattr(args, "cross_judge_base_url", None)
    if second is not None:
        if not evaluation.get("cross_judge"):
            raise ConfigError("--cross-judge-base-url: the experiment has no evaluation.cross_judge")
        evaluation["cross_judge"] = {**evaluation["cross_judge"], "base_url": second}
    out = {**data, "dataset": dataset, "evaluation": evaluation}
    if getattr(args, "out", None):
        out["out"] = args.out
    return out
