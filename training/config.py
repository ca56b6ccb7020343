"""Configuration of a fine-tuning run: defaults < recipe YAML < command-line flags, one typed model.

A recipe (``training/recipes/<model>/<variant>.yaml``) sets four sections and the output folder::

    model:    {name_or_path: mistralai/Mistral-7B-Instruct-v0.2, dtype: float32}   # or tiny: {...}
    data:     {datasets: [{path: out/paper, configs: [k1, k2, k3]}], evaluation: {settings: [held-out]}}
    training: {max_steps: 4000, per_device_train_batch_size: 4, effective_batch_size: 64, ...}
    hub:      {push_to_hub: org/model, checkpoints_branch: checkpoints}

Every key is declared once below (type, default, bounds, help); an unknown key, a wrong type or a value out
of bounds is one :class:`ConfigError` line naming the recipe file or the flag, and the key. The flags are
generated from the model (``--max-steps``, ``--learning-rate``, ``--packing``, ``--push-to-hub``,
``--model-name-or-path``, ...); ``--data PATH[@REVISION]`` replaces the location of the recipe's dataset.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skillmix.config import ConfigError, Flags, add_flags, build, merge, read_yaml
from skillmix.hub_ids import split_revision
from skillmix.skills import content_hash
from skillmix.training.method_settings import DPOSettings, GRPOSettings

Setting = Literal["train", "held-out", "all"]
_STRICT = ConfigDict(extra="forbid", strict=True)


class DatasetSource(BaseModel):
    """One Skill-Mix dataset: a folder made by ``skillmix dataset``, or a Hub repo pinned to a revision."""

    model_config = _STRICT

    path: str = Field(description="a local dataset folder, or a Hub dataset repo (org/name)")
    revision: str | None = Field(None, description="tag or commit of a Hub repo (required for one)")
    configs: list[str] = Field(default_factory=lambda: ["k1", "k2", "k3"], min_length=1)
    subsample: dict[str, int] = Field(default_factory=dict, description="rows drawn per config (seeded)")

    @field_validator("subsample")
    @classmethod
    def _positive(cls, sizes: dict[str, int]) -> dict[str, int]:
        for name, size in sizes.items():
            if size < 1:
                raise ValueError(f"subsample of {name} must be >= 1, got {size}")
        return sizes


class PlainText(BaseModel):
    """Plain text mixed into the training data (the paper mixes in pre-training text of unstated corpus and
    ratio: both are the recipe's choice)."""

    model_config = _STRICT

    path: str = Field(description="a Hub dataset, or a local .jsonl/.json/.parquet/.txt file or folder")
    name: str | None = Field(None, description="the dataset's config name")
    split: str = "train"
    revision: str | None = Field(None, description="tag or commit of a Hub dataset (required for one)")
    text_field: str = "text"
    ratio: float = Field(gt=0, le=10, description="plain-text rows per Skill-Mix row")


class EvaluationSet(BaseModel):
    """The evaluation prompts no training row may share a combination with."""

    model_config = _STRICT

    settings: list[Setting] = Field(default_factory=lambda: ["held-out"], min_length=1)
    n: int | None = Field(None, ge=1, description="combinations per k (none: the release's, else 100)")
    seed: int | None = Field(None, description="sampling seed (none: the dataset's)")
    k: list[int] | None = Field(None, description="the evaluation's k (none: 2, 3, 4, 5)")


class DataConfig(BaseModel):
    model_config = _STRICT

    datasets: list[DatasetSource] = Field(min_length=1)
    plain_text: PlainText | None = None
    evaluation: EvaluationSet = Field(default_factory=EvaluationSet)
    seed: int = Field(
        0,
        description="seed of the subsample and the plain-text draw (which rows; their order "
        "follows training.seed)",
    )


class TinyModel(BaseModel):
    """A randomly initialised model and a tokenizer trained on the run's own texts: nothing is downloaded."""

    model_config = _STRICT

    architecture: Literal["llama", "mistral"] = "llama"
    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int = Field(512, ge=300, description="BPE vocabulary trained on the training texts")
    chat_format: Literal["chatml", "llama-2", "mistral", "gemma"] = "chatml"
    seed: int = 0


class LoraSettings(BaseModel):
    """LoRA adapters (``peft``'s ``LoraConfig``): the model's weights stay frozen in ``model.dtype`` (bf16 is
    allowed: nothing of theirs is stepped), the adapters are trained in fp32."""

    model_config = _STRICT

    r: int = Field(16, ge=1, description="the adapters' rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (the adapters' scale is alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
    )


class ModelConfig(BaseModel):
    model_config = _STRICT

    name_or_path: str = Field(description="Hub model id or local folder (a name only for a tiny model)")
    revision: str | None = Field(None, description="model revision (tag, branch or commit)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "float32",
        description="the dtype the weights are loaded (and kept) in: float32 master weights, with "
        "training.bf16 for mixed precision; a lower one only under DeepSpeed ZeRO, which keeps fp32 masters",
    )
    attn_implementation: str | None = Field(None, description="sdpa, eager, flash_attention_2, ...")
    chat_template: str | None = Field(None, description="a .jinja file replacing the tokenizer's template")
    tiny: TinyModel | None = None
    lora: LoraSettings | None = Field(
        None, description="train LoRA adapters (peft, the gpu extra), not the model"
    )


class TrainingConfig(BaseModel):
    """The step loop: TRL ``SFTConfig`` values, with the effective batch declared once."""

    model_config = _STRICT

    max_steps: int = Field(4000, ge=1)
    epochs: int | None = Field(
        None, ge=1, le=3, description="method dpo: passes over the pairs (1-3), max_steps then a bound"
    )
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int | None = Field(None, ge=1, description="none: from the effective batch")
    effective_batch_size: int | None = Field(None, ge=1, description="per-device batch x accumulation x GPUs")
    learning_rate: float = Field(2e-5, gt=0)
    lr_scheduler_type: Literal["constant_with_warmup", "constant", "linear", "cosine"] = (
        "constant_with_warmup"
    )
    warmup_steps: int = Field(0, ge=0)
    optim: str = Field("adamw_torch", description="optimizer (adamw_torch with no weight decay is Adam)")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(1024, ge=8, description="tokens per sample (or per packed row)")
    packing: bool = Field(False, description="padding-free packing of samples (answer-only loss kept)")
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = Field(10, ge=1)
    save_steps: int | None = Field(None, ge=1, description="steps between checkpoints (none: only the end)")
    save_total_limit: int | None = Field(None, ge=1)
    seed: int = 0
    dataloader_num_workers: int = Field(0, ge=0)
    report_to: str = Field("none", description="none, tensorboard, wandb, trackio, ...")


class HubConfig(BaseModel):
    model_config = _STRICT

    push_to_hub: str | None = Field(None, description="push the final model and its card to org/model")
    private: bool = Field(False, description="create the model repo private")
    checkpoints_branch: str | None = Field(None, description="also push each checkpoint to this branch")


class LauncherSettings(BaseModel):
    """Where the recipe runs, for the memory check (``skillmix train --plan``, and before anything is loaded):
    an accelerate config and its process count; the GPU memory when no GPU is visible here."""

    model_config = _STRICT

    accelerate_config: str | None = Field(
        None, description="the accelerate config the recipe is launched with (training/accelerate/*.yaml)"
    )
    num_processes: int | None = Field(None, ge=1, description="GPUs (none: the accelerate config's, else 1)")
    gpu_memory_gb: float | None = Field(
        None, gt=0, description="memory of one GPU in GiB, for the memory check where no GPU is visible"
    )


class TrainConfig(BaseModel):
    """Every setting of ``skillmix train``."""

    model_config = _STRICT

    method: Literal["sft", "dpo", "grpo"] = Field(
        "sft", description="sft (the paper), dpo (preference pairs), grpo (the judge as the reward)"
    )
    model: ModelConfig
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    dpo: DPOSettings = Field(default_factory=DPOSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    launcher: LauncherSettings = Field(default_factory=LauncherSettings)
    output_dir: str | None = Field(None, description="output folder (default out/train/<model>-<variant>)")
    recipe: str | None = Field(None, description="the recipe file these values came from")

    @model_validator(mode="after")
    def _epochs_of_pairs(self) -> TrainConfig:
        if self.training.epochs is not None and self.method != "dpo":
            raise ValueError(
                f"training.epochs sizes method dpo's passes over its pairs; method {self.method} "
                "counts max_steps"
            )
        if self.model.lora is not None and self.method != "grpo":
            raise ValueError(
                f"model.lora: LoRA adapters are a recipe option of method grpo, not {self.method}"
            )
        return self

    def fingerprint(self) -> str:
        """What makes two runs into the same folder the same run: the Hub settings, the step count (a run
        can be resumed for more steps) and logging/saving settings are left out."""
        volatile = {
            "max_steps",
            "logging_steps",
            "save_steps",
            "save_total_limit",
            "dataloader_num_workers",
            "report_to",
            "epochs",  # like max_steps: a run can be resumed for more
        }
        # where the judge is, what it may cost and how many failures it may have: not the run
        judge = {"base_url": True, "client": True, "max_ungraded_share": True}
        exclude = {
            "hub": True,
            "launcher": True,  # where it runs, not what is trained
            "output_dir": True,
            "recipe": True,
            "training": volatile,
            "grpo": {"judge": judge},
            # which evaluation sets the leakage check compares against is not what is trained: the train and
            # all sets are drawn from what the dataset did not draw, so a larger n re-runs no training
            "data": {"evaluation": True},
        }
        return content_hash(self.model_dump(exclude=exclude))

    def output_path(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        recipe = Path(self.recipe or "run.yaml")
        return Path("out") / "train" / f"{recipe.parent.name}-{recipe.stem}".strip("-")


def add_train_flags(parser: argparse.ArgumentParser) -> Flags:
    """``--config``, ``--data`` and one flag per scalar setting of :class:`TrainConfig`."""
    parser.add_argument(
        "--config", required=True, help="recipe YAML (training/recipes/<model>/<variant>.yaml)"
    )
    where = "replace the location of the recipe's dataset (a folder, or org/name@revision)"
    parser.add_argument("--data", dest="data_location", metavar="PATH[@REVISION]", help=where)
    skip = ("recipe", "datasets", "plain_text", "tiny", "settings", "lora")  # lists and nested: the recipe's
    return add_flags(parser, TrainConfig, flatten=("training", "hub", "client", "launcher"), skip=skip)


def build_config(
    recipe: str | Path,
    overrides: dict[str, Any] | None = None,
    flags: Flags | None = None,
    data_location: str | None = None,
) -> TrainConfig:
    """Defaults, then the recipe, then ``overrides`` (nested like the model; ``None`` values are ignored).

    The recipe is validated on its own first, so that an error in it names the file; an error in the
    overrides names the flag.
    """
    recipe = resolve_recipe(recipe)
    source = f"recipe {recipe}"
    data = read_yaml(recipe, "recipe")
    build(TrainConfig, data, source)
    merged = merge({**data, "recipe": str(recipe)}, overrides or {})
    if data_location:
        merged = _relocate(merged, data_location)
    return build(TrainConfig, merged, "flags", flags)


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe file, else a recipe shipped with the package (``tiny/smoke``, or
    ``training/recipes/tiny/smoke.yaml`` outside the repository)."""
    path = Path(recipe)
    if path.is_file():
        return path
    name = str(recipe).removeprefix("training/recipes/").removesuffix(".yaml")
    shipped = resources.files("skillmix.training") / "recipes" / f"{name}.yaml"
    return Path(str(shipped)) if shipped.is_file() else path


def _relocate(data: dict[str, Any], location: str) -> dict[str, Any]:
    """The recipe with its one dataset moved to ``location`` (``PATH`` or ``org/name@revision``, read by
    :func:`skillmix.hub_ids.split_revision`: an existing folder is whole, '@' and all)."""
    sources = list(data["data"]["datasets"])
    if len(sources) != 1:
        raise ConfigError(f"--data: the recipe names {len(sources)} datasets; edit the recipe instead")
    path, revision = split_revision(location)
    moved = {**sources[0], "path": path, "revision": revision}
    return {**data, "data": {**data["data"], "datasets": [moved]}}


def world_size() -> int:
    """Processes of this run, as set by ``accelerate launch`` / ``torchrun`` (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_steps(training: TrainingConfig, processes: int | None = None) -> int:
    """Gradient accumulation that makes per-device batch x accumulation x processes the effective batch."""
    processes = processes or world_size()
    per_step = training.per_device_train_batch_size * processes
    if training.effective_batch_size is None:
        return training.gradient_accumulation_steps or 1
    steps, rest = divmod(training.effective_batch_size, per_step)
    if rest or steps == 0:
        raise ConfigError(
            f"training.effective_batch_size: {training.effective_batch_size} is not a multiple of "
            f"per-device batch {training.per_device_train_batch_size} x {processes} process(es)"
        )
    if training.gradient_accumulation_steps not in (None, steps):
        raise ConfigError(
            f"training.gradient_accumulation_steps: {training.gradient_accumulation_steps} x per-device "
            f"batch {training.per_device_train_batch_size} x {processes} process(es) is not the effective "
            f"batch {training.effective_batch_size}; leave it out to derive it"
        )
    return steps
