"""The student: its tokenizer (with a chat template) and its model, pretrained or tiny and random.

A model or tokenizer that cannot be loaded (no such repo or folder, a revision that does not exist, no
network) is one :class:`ConfigError` line naming ``model.name_or_path``, raised before the output folder
is touched. The tokenizer is loaded first, so a bad name fails before the data is tokenized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.training.config import LoraSettings, ModelConfig
from skillmix.training.tiny import build_model, build_tokenizer


def load_tokenizer(spec: ModelConfig, corpus: list[str]) -> Any:
    """The tokenizer of ``spec`` (a tiny one is trained on ``corpus``), with a chat template and pad token."""
    if spec.tiny is not None:
        tokenizer = build_tokenizer(corpus, spec.tiny.vocab_size, spec.tiny.chat_format)
    else:
        tokenizer = _pretrained_tokenizer(spec)
    if spec.chat_template:
        path = Path(spec.chat_template)
        if not path.is_file():
            raise ConfigError(f"model.chat_template: {path} not found")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"model.name_or_path: {spec.name_or_path} has no chat template; set model.chat_template"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _pretrained_tokenizer(spec: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.name_or_path, revision=spec.revision)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(_cannot_load(spec, exc)) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"model.name_or_path: {spec.name_or_path} has no fast tokenizer (offsets are needed)"
        )
    return tokenizer


def load_model(spec: ModelConfig, tokenizer: Any, max_length: int) -> Any:
    """The model to fine-tune: random and tiny, or the pretrained weights in the recipe's dtype."""
    if spec.tiny is not None:
        return build_model(spec.tiny, tokenizer, max_length)
    import torch
    from transformers import AutoModelForCausalLM

    dtype = "auto" if spec.dtype == "auto" else getattr(torch, spec.dtype)
    options: dict[str, Any] = {"revision": spec.revision, "dtype": dtype}
    if spec.attn_implementation:
        options["attn_implementation"] = spec.attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(spec.name_or_path, **options)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ConfigError(_cannot_load(spec, exc)) from None


def _cannot_load(spec: ModelConfig, exc: BaseException) -> str:
    revision = f" at revision {spec.revision}" if spec.revision else ""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"model.name_or_path: cannot load {spec.name_or_path}{revision}: {reason}"


def check_precision(spec: ModelConfig) -> None:
    """Refuse weights that would be stepped in low precision: single-device, DDP and FSDP training keep
    fp32 master weights only when the model is loaded in float32 (``training.bf16`` then computes in bf16
    under autocast); DeepSpeed ZeRO keeps its own fp32 masters, so it may load in bf16. ``auto`` takes the
    checkpoint's dtype, bf16 for most models."""
    if spec.tiny is not None or spec.dtype == "float32" or spec.lora is not None or deepspeed_launch():
        return  # LoRA: the weights are frozen, the adapters are made in fp32
    raise ConfigError(
        f"model.dtype: {spec.dtype} would train the weights themselves in low precision (no fp32 master "
        "copy); use float32 with training.bf16: true for mixed precision (a bf16 load is kept for "
        "DeepSpeed ZeRO, which keeps fp32 masters)"
    )


def lora_config(lora: LoraSettings | None) -> Any:
    """``peft``'s ``LoraConfig`` of ``model.lora`` (None: no adapters); peft is in the ``gpu`` extra, and its
    absence is refused before anything is loaded (:func:`skillmix.training.launch.check_gpu_paths`)."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def deepspeed_launch() -> bool:
    """Whether this process was launched by ``accelerate launch`` with a DeepSpeed config."""
    import os

    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")


def parameter_count(model: Any) -> int:
    """The model's parameters; under ZeRO-3 a parameter is a partition placeholder whose full size is
    ``ds_numel`` (``numel()`` would count the local shard, often 0)."""
    return sum(int(getattr(p, "ds_numel", 0) or p.numel()) for p in model.parameters())
