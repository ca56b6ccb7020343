"""Configuration of a dataset build: defaults < preset YAML < command-line flags, one typed model.

:class:`DatasetConfig` declares every setting once (type, default, bounds, help); the presets in
``pipelines/presets/<name>.yaml`` (``smoke``: a few combinations, the default; ``paper``: the sizes of
2409.19808) and the flags of ``skillmix dataset`` (generated from the model by :func:`add_dataset_flags`)
only set values. The model settings sit under ``teacher:`` and ``judge:``, the client's load, retry and
spending settings under ``client:`` (their flags carry no prefix: ``--concurrency``, ``--max-usd``).
Environment variables are read only for secrets and locations: ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skillmix.config import ConfigError, Flags, add_flags, build, merge, parse_yaml, read_yaml
from skillmix.llm.client import ClientConfig
from skillmix.llm.roles import embedded_plays_both
from skillmix.rules import DEFAULT_RULES, ScoringRules
from skillmix.skills import content_hash

__all__ = ["ConfigError", "DatasetConfig", "ModelSettings", "ProtocolConfig", "build_config", "preset_names"]

# The original code's temperature for the teacher and for each grader run (Skill-Mix grade.py): the grader
# runs are samples, so that their majority is a vote. A role given in part keeps the others' defaults.
SAMPLING_TEMPERATURE = 0.7
# What may change between two runs into the same folder without making them different runs.
VOLATILE = (
    "n",
    "n_per_k",
    "target_accepted",
    "expected_acceptance",
    "client",
    "batch_size",
    "preset",
    "pairing",
    "batch_files",
)


class ModelSettings(BaseModel):
    """One model's role (teacher or judge): which model, where, and how it samples."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, description="model name (none: the embedded local model)")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL (default: OPENAI_BASE_URL)")
    temperature: float = Field(
        SAMPLING_TEMPERATURE, ge=0, description="sampling temperature (the judge's: of each grader run)"
    )
    max_tokens: int = Field(400, ge=1, description="longest reply, in tokens")
    seed: int | None = Field(0, description="sampling seed")
    mode: Literal["auto", "chat", "completion"] = Field(
        "auto", description="chat, or completion for a base model (auto: completion for the embedded one)"
    )
    batch: bool = Field(
        False, description="send this role's requests through its server's batch API (half price, hours)"
    )


class ProtocolConfig(BaseModel):
    """What every run of the pipeline shares (a dataset build, an evaluation): which combinations (k, the
    sampling and split seeds, the catalog), how the judge grades them, and the client that sends it all.

    :class:`DatasetConfig` and :class:`skillmix.evaluation.config.EvalConfig` extend it; ``generator`` is
    the model in the first seat (the teacher of a dataset, the student of an evaluation).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    k: list[int] = Field(default_factory=lambda: [3], description="k, or a list such as 1,2,3")
    seed: int = Field(0, description="sampling seed")
    split_seed: int = Field(0, description="seed of the topic split")
    catalog: str = Field("builtin", description="builtin, or a skills CSV/YAML/JSON file")
    topics: str | None = Field(None, description="a topics file overriding the catalog's topics")
    grader_runs: int = Field(3, ge=1, description="judge runs per text (majority vote)")
    grader_format: Literal["table", "json"] = Field("table", description="the judge's answer format")
    length_override: bool = Field(
        DEFAULT_RULES.length_override, description="the length point from the sentence counter"
    )
    name_penalty: bool = Field(
        DEFAULT_RULES.name_penalty, description="a skill named in the text earns no point"
    )
    judge: ModelSettings = Field(default_factory=ModelSettings)
    client: ClientConfig = Field(default_factory=ClientConfig)
    prices: str | None = Field(None, description="YAML/JSON price table overriding the built-in one")
    batch_size: int | None = Field(None, ge=1, description="rows per distilabel batch (none: one batch)")
    template_dir: str | None = Field(None, description="a folder of prompt templates replacing ours")
    batch_files: str | None = Field(
        None,
        description="write the batched roles' requests (every role, if none is batched) as OpenAI batch "
        "JSONL files in this folder for any engine to run, and stop (docs/batch.md)",
    )

    @field_validator("k", mode="before")
    @classmethod
    def _parse_k(cls, value: Any) -> Any:
        return parse_k(value) if isinstance(value, (int, str)) else value

    @field_validator("k")
    @classmethod
    def _check_k(cls, ks: list[int]) -> list[int]:
        if not ks:
            raise ValueError("K is empty")
        for k in ks:
            if k < 1:
                raise ValueError(f"K must be >= 1, got {k}")
        if len(set(ks)) != len(ks):
            raise ValueError(f"K lists a value twice: {ks}")
        return ks

    @model_validator(mode="after")
    def _check_vote(self) -> ProtocolConfig:
        if self.grader_runs > 1 and self.judge.temperature == 0:
            raise ValueError(
                f"judge.temperature 0 with grader_runs {self.grader_runs}: the runs would be one greedy "
                f"verdict paid {self.grader_runs} times, not a vote; sample them (the original grader: "
                f"{SAMPLING_TEMPERATURE}) or use one grader run"
            )
        return self

    @model_validator(mode="after")
    def _batch_files_roles(self) -> ProtocolConfig:
        """``--batch-files`` with no role batched batches every role (the rest of the rule: docs/batch.md)."""
        if self.batch_files is not None and not (self.generator.batch or self.judge.batch):
            self.generator.batch = self.judge.batch = True
        return self

    @property
    def generator(self) -> ModelSettings:
        """The model in the first seat: it writes the texts the judge grades."""
        raise NotImplementedError

    def file_roles(self) -> frozenset[str]:
        """The roles whose requests go to batch files (``--batch-files``): no server or key is needed."""
        if self.batch_files is None:
            return frozenset()
        roles = {"judge": self.judge.batch, "teacher": self.generator.batch, "student": self.generator.batch}
        return frozenset(role for role, batched in roles.items() if batched)

    def batch_priced(self, role: str) -> bool:
        """Whether ``role``'s requests are billed at a provider's batch price: batched through a batch API
        (batch files have no provider bill: their lines are priced as direct ones, from the price table)."""
        return self.settings_of(role).batch and self.batch_files is None

    @property
    def scoring_rules(self) -> ScoringRules:
        """The rules this run's texts are scored by, built here once and passed whole: its text checks, and
        the protocol's default ``unparseable`` (a dataset build has no such setting: its row with no parsed
        grade is failed under either rule; :class:`skillmix.evaluation.config.EvalConfig` sets its own)."""
        return ScoringRules(
            length_override=self.length_override,
            name_penalty=self.name_penalty,
            unparseable=DEFAULT_RULES.unparseable,
        )

    def settings_of(self, role: str) -> ModelSettings:
        """The settings of the model in ``role``: the judge's, or the generator's (teacher, student)."""
        return self.judge if role == "judge" else self.generator

    def judge_protocol(self) -> dict[str, Any]:
        """How the judge voted: what a reader of the numbers needs to know (manifest, card, results)."""
        judge = self.judge
        return {
            "model": judge.model,
            "temperature": judge.temperature,
            "max_tokens": judge.max_tokens,
            "seed": judge.seed,
            "mode": judge.mode,
            "grader_runs": self.grader_runs,
            "grader_format": self.grader_format,
        }


class DatasetConfig(ProtocolConfig):
    """Every setting of ``skillmix dataset``."""

    n: int | None = Field(4, ge=1, description="combinations per k (none: every combination)")
    n_per_k: dict[int, int | None] | None = Field(None, description="a preset's per-k sizes; --n wins")
    target_accepted: int | None = Field(
        None, ge=1, description="draw rounds until exactly N rows are kept per k"
    )
    expected_acceptance: float = Field(
        0.5,
        gt=0,
        le=1,
        description="acceptance rate assumed before any row is graded (estimate, first round)",
    )
    generations: int = Field(
        1, ge=1, description="texts per combination, each graded (1: the paper; more: preference pairs)"
    )
    pairing: Literal["widest", "all"] = Field(
        "widest",
        description="preference pairs of a combination: the widest margin (one pair), or every full-mark "
        "x rejected pair",
    )
    teacher: ModelSettings = Field(default_factory=ModelSettings)
    preset: str = Field("smoke", description="smoke (default), paper, or a YAML file")

    @property
    def generator(self) -> ModelSettings:
        return self.teacher

    def fingerprint(self) -> str:
        """What makes two runs the same run (sizes, speed and spending settings are left out)."""
        data = self.model_dump(exclude=set(VOLATILE))
        if data["generations"] == 1:  # the paper's one text per combination: the fingerprint of earlier runs
            del data["generations"]
        for role in ("teacher", "judge"):
            data[role].pop("base_url")
            data[role].pop("batch")  # the same requests, sent one way or the other
        return content_hash(data)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def count_for(self, k: int) -> int | None:
        if self.n_per_k is not None and k in self.n_per_k:
            return self.n_per_k[k]
        return self.n


def parse_k(value: int | str) -> list[int]:
    """``3`` or ``"1,2,3"`` -> [1, 2, 3]."""
    try:
        ks = [int(part) for part in str(value).replace(" ", "").split(",") if part]
    except ValueError:
        raise ValueError(f"K must be an integer or a comma-separated list, got {value!r}") from None
    if not ks:
        raise ValueError("K is empty")
    return ks


def preset_names() -> list[str]:
    folder = resources.files("skillmix.pipelines") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> tuple[dict[str, Any], str]:
    """A preset's settings and how to name it in errors: a built-in name, or a YAML file."""
    if not Path(name).suffix:
        if name not in preset_names():
            raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(preset_names())}, or a file)")
        text = (resources.files("skillmix.pipelines") / "presets" / f"{name}.yaml").read_text("utf-8")
        return parse_yaml(text, f"preset {name}"), f"preset {name}"
    return read_yaml(name, "preset"), f"preset {name}"


def build_config(
    preset: str = "smoke", overrides: dict[str, Any] | None = None, flags: Flags | None = None
) -> DatasetConfig:
    """Defaults, then the preset, then ``overrides`` (nested like the model; ``None`` values are ignored).

    The preset is validated on its own first, so that an error in it names the file; an error in the
    overrides names the flag (``flags``: destinations and paths from :func:`add_dataset_flags`).
    """
    data, source = load_preset(preset)
    build(DatasetConfig, data, source)
    merged = {**data, "preset": preset}
    if (overrides or {}).get("n") is not None:
        merged.pop("n_per_k", None)  # --n sets the size of every k
    return build(DatasetConfig, merge(merged, overrides or {}), "flags", flags)


def add_dataset_flags(parser: argparse.ArgumentParser) -> Flags:
    """One flag per setting of :class:`DatasetConfig` (``--teacher-model``, ``--concurrency``, ...)."""
    return add_flags(parser, DatasetConfig, flatten=("client",), skip=("preset",))


def uses_embedded(config: DatasetConfig) -> bool:
    """No key, no base URL, no model named: the embedded llama.cpp model plays teacher and judge."""
    return embedded_plays_both(config.teacher, config.judge)
