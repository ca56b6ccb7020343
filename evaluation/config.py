"""Configuration of ``skillmix eval``: defaults < a YAML file (``--config``) < command-line flags.

:class:`EvalConfig` declares every setting once. The YAML may be an evaluation's own file or a preset of
``skillmix dataset``: from a dataset preset the evaluation takes what the two share (the judge, the
client's limits and cap, prices, the grading protocol, the catalog and its split), so that a student is
graded by the same judge, under the same rubric, that graded its training data. A judge left unnamed in a
dataset preset is its teacher's model and server, as in ``skillmix dataset``.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skillmix.config import ConfigError, Flags, add_flags, build, merge, read_yaml
from skillmix.llm.client import ClientConfig
from skillmix.pipelines.config import DatasetConfig, ModelSettings, parse_k
from skillmix.skills import content_hash

__all__ = ["ConfigError", "EvalConfig", "StudentSettings", "build_eval_config"]

EVAL_SETTINGS = ("train", "held-out", "all")
# A file with any of these keys is a `skillmix dataset` preset; the evaluation takes only SHARED from it.
DATASET_ONLY = {"teacher", "n_per_k", "target_accepted", "expected_acceptance", "batch_size", "preset"}
# The keys a dataset preset shares with an evaluation (everything else describes the dataset build).
SHARED = ("judge", "client", "prices", "grader_runs", "grader_format", "length_override", "name_penalty",
          "catalog", "topics", "split_seed", "template_dir")  # fmt: skip


class StudentSettings(BaseModel):
    """The model under evaluation: an API model, a local folder or Hub id (``org/model@rev``), or none (the
    embedded model, for a smoke run)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, description="API model name, local folder, or Hub id[@revision]")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL of an API student")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (generations must differ)")
    max_tokens: int = Field(400, ge=1, description="longest reply, in tokens")
    seed: int = Field(0, description="seed of the first generation; generation g uses seed + g")
    chat_template: str | None = Field(None, description="a Jinja chat template for a model without one")
    mode: Literal["auto", "chat", "completion"] = Field(
        "auto", description="chat, or completion for a base model behind an API (auto: the embedded one)"
    )


class EvalConfig(BaseModel):
    """Every setting of ``skillmix eval``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    student: StudentSettings = Field(default_factory=StudentSettings)
    judge: ModelSettings = Field(default_factory=lambda: ModelSettings(temperature=0.0, max_tokens=400))
    k: list[int] = Field(default_factory=lambda: [2, 3, 4, 5], description="k, or a list such as 2,3,4,5")
    setting: list[str] = Field(
        default_factory=lambda: list(EVAL_SETTINGS), description="train, held-out, all, or a list"
    )
    n: int = Field(100, ge=1, description="combinations per k and setting")
    generations: int = Field(3, ge=1, description="student generations per combination (max is taken)")
    grader_runs: int = Field(3, ge=1, description="judge runs per text (majority vote)")
    grader_format: Literal["table", "json"] = Field("table", description="the judge's answer format")
    length_override: bool = Field(True, description="the length point from the sentence counter")
    name_penalty: bool = Field(True, description="a skill named in the text earns no point")
    eval_set: str | None = Field(
        None, description="a release's eval sets: Hub repo[@revision] or local folder (default: drawn)"
    )
    seed: int = Field(0, description="sampling seed of the drawn combinations (as `skillmix publish`)")
    split_seed: int = Field(0, description="seed of the topic split")
    catalog: str = Field("builtin", description="builtin, or a skills CSV/YAML/JSON file")
    topics: str | None = Field(None, description="a topics file overriding the catalog's topics")
    client: ClientConfig = Field(default_factory=ClientConfig)
    prices: str | None = Field(None, description="YAML/JSON price table overriding the built-in one")
    template_dir: str | None = Field(None, description="a folder of prompt templates replacing ours")

    @field_validator("k", mode="before")
    @classmethod
    def _parse_k(cls, value: Any) -> Any:
        return parse_k(value) if isinstance(value, (int, str)) else value

    @field_validator("k")
    @classmethod
    def _check_k(cls, ks: list[int]) -> list[int]:
        for k in ks:
            if k < 1:
                raise ValueError(f"K must be >= 1, got {k}")
        return sorted(set(ks))

    @field_validator("setting", mode="before")
    @classmethod
    def _parse_setting(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("setting")
    @classmethod
    def _check_setting(cls, settings: list[str]) -> list[str]:
        if not settings:
            raise ValueError("no setting given")
        for setting in settings:
            if setting not in EVAL_SETTINGS:
                raise ValueError(f"unknown setting {setting!r} (choose from {', '.join(EVAL_SETTINGS)})")
        return [s for s in EVAL_SETTINGS if s in settings]

    def pipeline_config(self) -> DatasetConfig:
        """The dataset pipeline's settings with the student in the teacher's seat (one code path)."""
        student = self.student
        teacher = ModelSettings(model=student.model, base_url=student.base_url,
                                temperature=student.temperature, max_tokens=student.max_tokens,
                                seed=student.seed, mode=student.mode)  # fmt: skip
        return DatasetConfig(
            k=self.k, n=self.n, seed=self.seed, split_seed=self.split_seed, catalog=self.catalog,
            topics=self.topics, grader_runs=self.grader_runs, grader_format=self.grader_format,
            length_override=self.length_override, name_penalty=self.name_penalty, teacher=teacher,
            judge=self.judge, client=self.client, prices=self.prices, template_dir=self.template_dir,
        )  # fmt: skip

    def protocol(self) -> dict[str, Any]:
        return {
            "generations": self.generations, "grader_runs": self.grader_runs,
            "grader_format": self.grader_format, "name_penalty": self.name_penalty,
            "length_override": self.length_override, "seed": self.seed, "split_seed": self.split_seed,
            "catalog": self.catalog, "eval_set": self.eval_set,
            "student_sampling": {"temperature": self.student.temperature,
                                 "max_tokens": self.student.max_tokens, "seed": self.student.seed},
            "judge_sampling": {"temperature": self.judge.temperature, "max_tokens": self.judge.max_tokens,
                               "seed": self.judge.seed},
        }  # fmt: skip

    def fingerprint(self, student_identity: str, judge_identity: str) -> str:
        """What makes two evaluations the same (which k, settings, how many and how fast may change)."""
        protocol = {key: value for key, value in self.protocol().items() if key != "generations"}
        return content_hash({"student": student_identity, "judge": judge_identity, **protocol,
                             "template_dir": self.template_dir, "topics": self.topics})  # fmt: skip


def shared_settings(path: str) -> dict[str, Any]:
    """The settings an evaluation takes from ``path``: an evaluation YAML whole, a dataset preset's
    shared keys (its judge completed from its teacher as ``skillmix dataset`` does)."""
    data = read_yaml(path, "config")
    if not set(data) & DATASET_ONLY:
        build(EvalConfig, data, f"config {path}")  # errors name the file and the key
        return data
    build(DatasetConfig, data, f"config {path}")
    shared = {key: data[key] for key in SHARED if key in data}
    teacher, judge = data.get("teacher") or {}, dict(data.get("judge") or {})
    if not judge.get("model") and teacher.get("model"):
        judge["model"] = teacher["model"]
        judge["base_url"] = judge.get("base_url") or teacher.get("base_url")
    if judge:
        shared["judge"] = judge
    return shared


def build_eval_config(
    config_file: str | None = None, overrides: dict[str, Any] | None = None, flags: Flags | None = None
) -> EvalConfig:
    """Defaults, then ``config_file``, then ``overrides`` (nested like the model; ``None`` values ignored)."""
    data = shared_settings(config_file) if config_file else {}
    config = build(EvalConfig, merge(data, overrides or {}), "flags", flags)
    if not config.judge.model:
        raise ConfigError(
            "name the judge: --judge-model NAME (with --judge-base-url URL for a server other than "
            "OPENAI_BASE_URL / api.openai.com), or --config FILE with a judge (a `skillmix dataset` preset "
            "works); the student never grades itself"
        )
    return config


def add_eval_flags(parser: argparse.ArgumentParser) -> Flags:
    """One flag per setting of :class:`EvalConfig` (``--student-model``, ``--judge-model``, ``--k``, ...)."""
    return add_flags(parser, EvalConfig, flatten=("client",))
