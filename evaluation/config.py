"""Configuration of ``skillmix eval``: defaults < a YAML file (``--config``) < command-line flags.

:class:`EvalConfig` declares every setting once. The YAML may be an evaluation's own file or a preset of
``skillmix dataset``: from a dataset preset the evaluation takes what the two share (the judge, the
client's limits and cap, prices, the grading protocol, the catalog and its split), so that a student is
graded by the same judge, under the same rubric, that graded its training data. A judge left unnamed in a
dataset preset is its teacher's model and server, as in ``skillmix dataset``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, field_validator

from skillmix.config import ConfigError, Flags, add_flags, build, merge, read_yaml
from skillmix.llm.roles import judge_defaults
from skillmix.pipelines.config import DatasetConfig, ModelSettings, ProtocolConfig
from skillmix.rules import DEFAULT_RULES, ScoringRules
from skillmix.skills import content_hash

__all__ = ["ConfigError", "EvalConfig", "StudentSettings", "build_eval_config"]

EVAL_SETTINGS = ("train", "held-out", "all")
# What a dataset preset draws (its k and sampling seed) describes that dataset, not an evaluation of it.
DRAWN = ("k", "seed")


# The original evaluation's new tokens per reply (Skill-Mix query_random.py): a truncated reply scores 0,
# which hits verbose chat models hardest, so the student gets the original's 512 (the teacher keeps 400).
STUDENT_MAX_TOKENS = 512


class StudentSettings(ModelSettings):
    """The model under evaluation: an API model, a local folder or Hub id (``org/model@rev``), or none (the
    embedded model, for a smoke run)."""

    model: str | None = Field(None, description="API model name, local folder, or Hub id[@revision]")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL of an API student")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (generations must differ)")
    max_tokens: int = Field(
        STUDENT_MAX_TOKENS, ge=1, description="longest reply, in tokens (512: the original's query_random.py)"
    )
    seed: int = Field(0, description="seed of the first generation; generation g uses seed + g")
    chat_template: str | None = Field(None, description="a Jinja chat template for a model without one")
    mode: Literal["auto", "chat", "completion"] = Field(
        "auto", description="chat, or completion for a base model behind an API (auto: the embedded one)"
    )


class EvalConfig(ProtocolConfig):
    """Every setting of ``skillmix eval``: the protocol it shares with the dataset build, and its own."""

    student: StudentSettings = Field(default_factory=StudentSettings)
    k: list[int] = Field(default_factory=lambda: [2, 3, 4, 5], description="k, or a list such as 2,3,4,5")
    setting: list[str] = Field(
        default_factory=lambda: list(EVAL_SETTINGS), description="train, held-out, all, or a list"
    )
    n: int = Field(100, ge=1, description="combinations per k and setting")
    generations: int = Field(3, ge=1, description="student generations per combination (max is taken)")
    eval_set: str | None = Field(
        None, description="a release's eval sets: Hub repo[@revision] or local folder (default: drawn)"
    )
    data: str | None = Field(
        None, description="a dataset folder: draw its release's eval sets (its seeds, split and catalog)"
    )
    seed: int = Field(0, description="sampling seed of the drawn combinations (as `skillmix publish`)")
    unparseable: Literal["zero", "drop"] = Field(
        DEFAULT_RULES.unparseable,
        description="a generation none of whose grades parsed: scored 0 (zero) or left out (drop)",
    )

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

    @property
    def generator(self) -> StudentSettings:
        return self.student

    @property
    def scoring_rules(self) -> ScoringRules:
        """The protocol's text checks and this evaluation's rule for a generation with no parsed grade."""
        return replace(super().scoring_rules, unparseable=self.unparseable)

    def protocol(self) -> dict[str, Any]:
        student, judge = self.student, self.judge
        return {
            "generations": self.generations,
            "grader_runs": self.grader_runs,
            "unparseable": self.unparseable,
            "grader_format": self.grader_format,
            "name_penalty": self.name_penalty,
            "length_override": self.length_override,
            "seed": self.seed,
            "split_seed": self.split_seed,
            "catalog": self.catalog,
            "eval_set": self.eval_set,
            "data": self.data,
            "student_sampling": {
                "temperature": student.temperature,
                "max_tokens": student.max_tokens,
                "seed": student.seed,
            },
            "judge": self.judge_protocol(),
            "judge_sampling": {
                "temperature": judge.temperature,
                "max_tokens": judge.max_tokens,
                "seed": judge.seed,
            },
        }

    def fingerprint(self, student_identity: str, judge_identity: str) -> str:
        """What makes two evaluations the same (which k, settings, how many and how fast may change)."""
        protocol = {key: value for key, value in self.protocol().items() if key != "generations"}
        identities = {"student": student_identity, "judge": judge_identity}
        return content_hash(
            {**identities, **protocol, "template_dir": self.template_dir, "topics": self.topics}
        )


def shared_settings(path: str) -> dict[str, Any]:
    """The settings an evaluation takes from ``path``: an evaluation YAML whole; from a dataset preset, the
    protocol both share (:class:`ProtocolConfig` but what the preset draws), its judge completed from its
    teacher as ``skillmix dataset`` does."""
    data = read_yaml(path, "config")
    if not set(data) - set(EvalConfig.model_fields):
        build(EvalConfig, data, f"config {path}")  # errors name the file and the key
        return data
    build(DatasetConfig, data, f"config {path}")
    apart = {*DRAWN, "batch_files"}  # the preset's draw, and its folder of batch files: the dataset's own
    shared = {key: data[key] for key in ProtocolConfig.model_fields if key in data and key not in apart}
    teacher, judge = data.get("teacher") or {}, dict(data.get("judge") or {})
    model, url = judge_defaults(
        judge.get("model"), judge.get("base_url"), teacher.get("model"), teacher.get("base_url")
    )
    judge.update({key: value for key, value in (("model", model), ("base_url", url)) if value is not None})
    if judge:
        shared["judge"] = judge
    return shared


# What a dataset folder recorded of its draw, and the setting it fills: the sampling seed (its release's eval
# sets are drawn with it), the split and the catalog (the held-out skills and topics depend on them).
FROM_DATASET = {
    "seed": ("seeds", "sampling"),
    "split_seed": ("config", "split_seed"),
    "catalog": ("config", "catalog"),
    "topics": ("config", "topics"),
}


def with_dataset(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the draw of the dataset folder ``data["data"]`` (:data:`FROM_DATASET`), so that the
    evaluation asks exactly the release's ``eval-<setting>`` combinations, the ones the leakage audit knows.

    A split or catalog given that differs from the dataset's is refused (its held-out skills would not be the
    release's); a different sampling seed is allowed when given, and ``skillmix eval`` says so. Without
    ``n``, the size is the release's ``eval_n_per_k`` when the folder is a downloaded release.
    """
    if data.get("eval_set"):
        raise ConfigError("--data and --eval-set both say which combinations to ask: give one")
    manifest = _manifest(data["data"])
    out = dict(data)
    for key, recorded in _draw(manifest).items():
        if key not in data:
            out[key] = recorded
        elif key != "seed" and data[key] != recorded:
            flag = f"--{key.replace('_', '-')}"
            raise ConfigError(
                f"{flag} {data[key]!r} differs from the dataset's {recorded!r} ({data['data']}): the "
                "evaluation would not ask its release's combinations; leave it out"
            )
    release_n = (manifest.get("release") or {}).get("eval_n_per_k")
    if "n" not in data and release_n:
        out["n"] = release_n
    return out


def dataset_draw(path: str) -> dict[str, Any]:
    """The settings of :data:`FROM_DATASET` as the dataset folder ``path`` recorded them."""
    return _draw(_manifest(path))


def _manifest(path: str) -> dict[str, Any]:
    from skillmix.dataset_folder.layout import read_dataset_folder

    return read_dataset_folder(path).manifest


def _draw(manifest: dict[str, Any]) -> dict[str, Any]:
    found = {key: (manifest.get(section) or {}).get(field) for key, (section, field) in FROM_DATASET.items()}
    return {key: value for key, value in found.items() if value is not None or key == "topics"}


def build_eval_config(
    config_file: str | None = None, overrides: dict[str, Any] | None = None, flags: Flags | None = None
) -> EvalConfig:
    """Defaults, then ``config_file``, then ``overrides`` (nested like the model; ``None`` values ignored)."""
    data = merge(shared_settings(config_file) if config_file else {}, overrides or {})
    if data.get("data"):
        data = with_dataset(data)
    config = build(EvalConfig, data, "flags", flags)
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
