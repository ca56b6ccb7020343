"""The settings of the preference and RL methods in a recipe: ``dpo:`` (TRL ``DPOConfig`` values and the
reference model) and ``grpo:`` (TRL ``GRPOConfig`` values and the judge that rewards, with the protocol's
grading settings declared once, in :class:`skillmix.pipelines.config.ProtocolConfig`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skillmix.llm.client import ClientConfig
from skillmix.pipelines.config import ModelSettings, ProtocolConfig

_STRICT = ConfigDict(extra="forbid", strict=True)


class DPOSettings(BaseModel):
    """``method: dpo``: TRL ``DPOConfig`` values (pairs from the dataset's ``preference`` config)."""

    model_config = _STRICT

    beta: float = Field(0.1, gt=0, description="DPO beta: the strength of the pull towards the reference")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="the DPO loss")
    reference: Literal["copy", "bf16", "precomputed"] = Field(
        "copy",
        description="the reference: a second copy of the starting model in model.dtype, that copy in bf16 "
        "(it is never stepped), or its log-probabilities computed once before step 1 (no second model kept)",
    )


_PROTOCOL = ProtocolConfig.model_fields  # the grading settings of a dataset build, declared there once


class JudgeSettings(ModelSettings):
    """The judge of ``method: grpo``: a judge's model settings (:class:`ModelSettings`), the protocol's
    grading settings (:class:`ProtocolConfig`'s, as in ``skillmix dataset`` and ``skillmix eval``) and the
    client's load, retry and spending settings (``client.max_usd`` caps what the judge may cost)."""

    grader_runs: int = _PROTOCOL["grader_runs"]
    grader_format: Literal["table", "json"] = _PROTOCOL["grader_format"]
    length_override: bool = _PROTOCOL["length_override"]
    name_penalty: bool = _PROTOCOL["name_penalty"]
    prices: str | None = _PROTOCOL["prices"]
    unparseable: Literal["zero", "drop"] = Field(
        "zero",
        description="a completion none of whose grader runs parsed (the model's doing): zero earns 0, drop "
        "gives it no reward (left out of its group's baseline, as a failed grading is)",
    )
    max_ungraded_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="stop when more than this share of a step's completions (all processes) could not be "
        "graded for the infrastructure (the judge's server failed past the retries)",
    )
    client: ClientConfig = Field(default_factory=ClientConfig)

    @field_validator("batch")
    @classmethod
    def _direct(cls, batch: bool) -> bool:
        if batch:
            raise ValueError("a reward is needed within the step: the judge cannot go through a batch API")
        return batch

    @model_validator(mode="after")
    def _seeded_runs(self) -> JudgeSettings:
        if self.grader_runs > 1 and self.seed is None:
            raise ValueError(
                f"grader_runs {self.grader_runs} needs a seed: unseeded runs are one request (one cache "
                "key), one verdict paid once and counted as several"
            )
        return self

    def protocol(self) -> dict[str, Any]:
        """The settings as a :class:`ProtocolConfig` (whose checks, e.g. a vote of greedy runs, apply)."""
        grading = {name: getattr(self, name) for name in ("grader_runs", "grader_format", "prices")}
        checks = {"length_override": self.length_override, "name_penalty": self.name_penalty}
        judge = self.model_dump(include=set(ModelSettings.model_fields))
        return {**grading, **checks, "judge": judge, "client": self.client.model_dump()}


class GRPOSettings(BaseModel):
    """``method: grpo``: TRL ``GRPOConfig`` values and the judge that rewards the student's answers."""

    model_config = _STRICT

    num_generations: int = Field(4, ge=2, description="completions per prompt (the group of GRPO)")
    max_completion_length: int = Field(256, ge=8, description="longest completion, in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the student's completions")
    beta: float = Field(0.0, ge=0, description="KL coefficient (0: no reference model, TRL's default)")
    reward: Literal["full_marks", "skill_fraction", "mean"] = Field(
        "full_marks", description="reward of a graded answer: full marks, skill fraction, or their mean"
    )
    prompt_mode: Literal["chat", "completion"] = Field(
        "chat",
        description="chat: the prompt is one user turn and the whole reply is the answer; completion: "
        "plain text ending with 'Answer:' (a base model)",
    )
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    use_vllm: bool = Field(False, description="generate with vLLM (TRL's use_vllm; GPU only, see the docs)")
    vllm_mode: Literal["colocate"] = Field(
        "colocate", description="vLLM in the training processes (TRL's vllm_mode; no separate server here)"
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, lt=1, description="the share of each GPU's memory vLLM takes (TRL's default 0.3)"
    )
    vllm_enable_sleep_mode: bool = Field(
        False, description="vLLM frees its weights and cache during the optimizer step (TRL's sleep mode)"
    )
