"""Where a run's processes are and how they shard the model: read from the recipe's accelerate config for the
plan, or from the environment ``accelerate launch`` sets for a run; and the GPU-only paths refused on CPU.

A :class:`Launch` is the sharding the memory arithmetic (:mod:`.memory`) needs: ``single`` (one process),
``ddp`` (every process holds the whole model), ``fsdp`` (FSDP 2: parameters, gradients and optimizer state
sharded over the processes) or ``zero3`` (DeepSpeed ZeRO stage 3: the same, with bf16 parameters and fp32
masters in the optimizer). The accelerate configs of ``training/accelerate/`` are read by
:func:`read_accelerate_config`, which refuses what the arithmetic does not model (FSDP 1, ZeRO stages 1-2,
parameter offload) in one line naming the file and the key.

GPU-only paths cannot run on a machine without CUDA: vLLM generation (``grpo.use_vllm``) and an FSDP or
DeepSpeed launch. :func:`check_gpu_paths` refuses each in one line, before anything is loaded; they are
untested on GPUs here (see the Training page).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skillmix.config import ConfigError, read_yaml
from skillmix.training.config import TrainConfig

Sharding = Literal["single", "ddp", "fsdp", "zero3"]
_KINDS = {"NO": "single", "MULTI_GPU": "ddp", "FSDP": "fsdp", "DEEPSPEED": "zero3"}


@dataclass(frozen=True)
class Launch:
    """The processes of a run and how they hold the model."""

    sharding: Sharding
    processes: int
    source: str  # where this came from: the accelerate config's path, or "this process"
    offload_optimizer: bool = False  # ZeRO-3 with the optimizer state in CPU memory

    @property
    def shards(self) -> int:
        """How many ways parameters, gradients and optimizer states are split."""
        return self.processes if self.sharding in ("fsdp", "zero3") else 1

    def describe(self) -> str:
        names = {
            "single": "one process",
            "ddp": "DDP, the whole model on every GPU",
            "fsdp": f"FSDP 2, sharded {self.shards} ways",
            "zero3": f"DeepSpeed ZeRO-3, sharded {self.shards} ways"
            + (", optimizer state offloaded to CPU" if self.offload_optimizer else ""),
        }
        return f"{self.source}: {names[self.sharding]}, {self.processes} GPU(s)"


def read_accelerate_config(path: str | Path, processes: int | None = None) -> Launch:
    """The launch an accelerate config describes (``processes`` overrides its ``num_processes``)."""
    data = read_yaml(path, "accelerate config")
    where = f"accelerate config {path}"
    kind = _KINDS.get(str(data.get("distributed_type", "NO")))
    if kind is None:
        raise ConfigError(f"{where}: distributed_type {data.get('distributed_type')!r} is not modelled")
    count = processes or int(data.get("num_processes", 1))
    offload = False
    if kind == "fsdp":
        fsdp = data.get("fsdp_config") or {}
        if int(fsdp.get("fsdp_version", 1)) != 2:
            raise ConfigError(f"{where}: fsdp_config.fsdp_version: only FSDP 2 is modelled (set 2)")
        if fsdp.get("fsdp_offload_params"):
            raise ConfigError(f"{where}: fsdp_config.fsdp_offload_params: offload is not modelled")
    if kind == "zero3":
        deepspeed = data.get("deepspeed_config") or {}
        if int(deepspeed.get("zero_stage", 0)) != 3:
            raise ConfigError(f"{where}: deepspeed_config.zero_stage: only ZeRO stage 3 is modelled (set 3)")
        if str(deepspeed.get("offload_param_device", "none")) != "none":
            raise ConfigError(f"{where}: deepspeed_config.offload_param_device: not modelled (set none)")
        offload = str(deepspeed.get("offload_optimizer_device", "none")) != "none"
    if kind == "single" and count > 1:
        kind = "ddp"
    return Launch(kind, count, str(path), offload)


def planned_launch(config: TrainConfig) -> Launch:
    """The launch the recipe names (``launcher``), for ``--plan``: one process when it names none."""
    launcher = config.launcher
    if launcher.accelerate_config:
        return read_accelerate_config(_resolve(launcher.accelerate_config), launcher.num_processes)
    count = launcher.num_processes or 1
    return Launch("ddp" if count > 1 else "single", count, "recipe launcher")


def current_launch() -> Launch:
    """The launch of this process, from the environment ``accelerate launch`` (or ``torchrun``) set."""
    env = os.environ
    count = int(env.get("WORLD_SIZE", "1"))
    offload = env.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none") not in ("none", "")
    if _on(env.get("ACCELERATE_USE_DEEPSPEED")):
        return Launch("zero3", count, "this launch", offload)
    if _on(env.get("ACCELERATE_USE_FSDP")):
        return Launch("fsdp", count, "this launch")
    return Launch("ddp" if count > 1 else "single", count, "this launch")


VLLM_UNAVAILABLE = (
    "no vLLM release resolves with this release's pins (torch 2.13.0, transformers 5.23.0, trl 1.16.0): "
    "vLLM 0.31.0, the newest TRL 1.16 supports, needs transformers < 5.18; 0.33.0 and 0.34.0 need torch "
    "2.14.0 and transformers < 5.21 / < 5.23"
)


def check_gpu_paths(config: TrainConfig, cuda: bool) -> None:
    """Refuse, one line each, what needs a GPU when none is visible (vLLM generation, an FSDP or a DeepSpeed
    launch) and an option whose package is not installed (vLLM, peft for LoRA)."""
    if config.model.lora is not None and not _installed("peft"):
        raise ConfigError("model.lora: LoRA needs peft: pip install -e '.[train,gpu]'")
    if not cuda:
        _refuse_without_gpu(config)
    if config.method == "grpo" and config.grpo.use_vllm and not _installed("vllm"):
        raise ConfigError(f"grpo.use_vllm: vLLM colocate is unavailable: {VLLM_UNAVAILABLE}")


def _installed(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def _refuse_without_gpu(config: TrainConfig) -> None:
    if config.method == "grpo" and config.grpo.use_vllm:
        raise ConfigError(
            "grpo.use_vllm: vLLM generation (colocate) needs a CUDA GPU and none is visible; "
            "set use_vllm: false to generate with transformers"
        )
    env = os.environ
    if _on(env.get("ACCELERATE_USE_FSDP")):
        raise ConfigError(
            "accelerate launch with FSDP needs CUDA GPUs and none is visible; use ddp.yaml on CPU"
        )
    if _on(env.get("ACCELERATE_USE_DEEPSPEED")):
        raise ConfigError(
            "accelerate launch with DeepSpeed ZeRO-3 needs CUDA GPUs and none is visible; use ddp.yaml on CPU"
        )


def device_memory_gb() -> float | None:
    """The memory of this machine's first GPU in GiB; None without one (torch is imported only if it is
    installed)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30


def _on(value: Any) -> bool:
    return str(value or "").lower() in ("1", "true", "yes")


def _resolve(path: str) -> Path:
    """An accelerate config by path, else one shipped with the package (``training/accelerate/fsdp.yaml``)."""
    from importlib import resources

    candidate = Path(path)
    if candidate.is_file():
        return candidate
    name = path.removeprefix("training/").removeprefix("accelerate/")
    shipped = resources.files("skillmix.training") / "accelerate" / name
    return Path(str(shipped)) if shipped.is_file() else candidate
