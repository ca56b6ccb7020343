"""The memory of one GPU a recipe needs, as arithmetic: weights, gradients, optimizer states, the DPO
reference, activations at the recipe's batch and length, GRPO's generation, under the launch's sharding.

An estimate, in GiB (2^30 bytes), of the peak of the largest phase; every term is printed so that it can be
checked. ``N`` parameters, ``S`` shards (the processes under FSDP or ZeRO-3, else 1):

* **model states**, full fine-tuning with fp32 masters and Adam: 4 (weights) + 4 (gradients) + 8 (Adam's two
  moments) bytes per parameter, / S. Under ZeRO-3: 2 (bf16 weights) + 2 (bf16 gradients) + 12 (fp32 master
  and moments, in CPU memory when the optimizer is offloaded) bytes, / S. FSDP 2 gathers a layer's bf16
  weights at a time: two layers (or the embedding) are counted whole. Without sharding, autocast keeps a
  bf16 copy of the weights during the forward (2 bytes per parameter). LoRA: the frozen weights in
  ``model.dtype``, the adapters' 16 bytes per trainable parameter.
* **activations** of one micro-batch (per-device batch sequences of ``max_length`` tokens; a DPO pair is two
  sequences): with gradient checkpointing each layer's bf16 input (``2 h`` bytes a token) plus one layer
  recomputed; without, every layer's saved tensors (``2 (8 h + 2 kv + 4 i) + 8 h`` bytes a token per layer:
  the projections' inputs and outputs in bf16, the norms' inputs in fp32; SDPA/flash attention, no
  ``s^2`` term); and the logits in fp32 with their log-softmax (``8 V`` bytes a token).
* **DPO's reference**: a copy in ``model.dtype`` or in bf16 (under FSDP TRL shards it at its root only, so its
  forward gathers it whole: counted whole; under ZeRO-3 sharded), or none when its log-probabilities are
  precomputed (then, under FSDP, TRL loads a copy in the policy's dtype for that pass before step 1, a
  phase of its own, before the policy is sharded onto the GPUs).
* **GRPO's generation** with transformers: the KV cache of a generation batch per device (per-device batch x
  accumulation sequences of ``max_length`` tokens, ``4 L kv`` bytes a token in bf16) beside the model
  states; with vLLM (colocate) vLLM takes ``vllm_gpu_memory_utilization`` of the GPU for its bf16 weights
  and cache, all the time, or only while generating with sleep mode.
* **a reserve** of :data:`RESERVE_GB` for the CUDA context, the allocator's fragmentation and NCCL buffers.

Nothing here loads a model: the shape comes from :data:`SHAPES` (the paper's students, from their
``config.json``), a local folder's ``config.json``, or the tiny model's settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from skillmix.training.config import TrainConfig, accumulation_steps
from skillmix.training.launch import Launch

GIB = 2**30
RESERVE_GB = 2.0  # CUDA context, allocator fragmentation, communication buffers


@dataclass(frozen=True)
class Shape:
    """What the arithmetic needs of a decoder: parameters, widths, layers, vocabulary."""

    parameters: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def kv(self) -> int:
        return self.hidden * self.kv_heads // self.heads

    @property
    def layer_parameters(self) -> int:
        return 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv + 3 * self.hidden * self.intermediate


# The paper's students and the small one, from their Hub config.json (parameters: the safetensors' count)
SHAPES = {
    "mistralai/Mistral-7B-Instruct-v0.2": Shape(7_241_732_096, 4096, 32, 14336, 32, 8, 32000),
    "meta-llama/Llama-2-13b-chat-hf": Shape(13_015_864_320, 5120, 40, 13824, 40, 40, 32000),
    "Qwen/Qwen2.5-0.5B-Instruct": Shape(494_032_768, 896, 24, 4864, 14, 2, 151936),
}


def model_shape(config: TrainConfig) -> Shape | None:
    """The student's shape, or None when it is not known without loading it."""
    spec = config.model
    if spec.tiny is not None:
        t = spec.tiny
        shape = Shape(0, t.hidden_size, t.num_layers, t.intermediate_size, t.num_heads, t.num_kv_heads, 0)
        vocab = t.vocab_size + 16  # the trained vocabulary and the chat format's special tokens, at most
        parameters = 2 * vocab * t.hidden_size + t.num_layers * shape.layer_parameters
        return Shape(
            parameters,
            *(getattr(shape, f) for f in ("hidden", "layers", "intermediate")),
            t.num_heads,
            t.num_kv_heads,
            vocab,
        )
    if spec.name_or_path in SHAPES:
        return SHAPES[spec.name_or_path]
    local = Path(spec.name_or_path) / "config.json"
    return _from_config_json(local) if local.is_file() else None


def _from_config_json(path: Path) -> Shape | None:
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        h, layers, inter = data["hidden_size"], data["num_hidden_layers"], data["intermediate_size"]
        heads, vocab = data["num_attention_heads"], data["vocab_size"]
    except KeyError:
        return None
    kv_heads = data.get("num_key_value_heads") or heads
    probe = Shape(0, h, layers, inter, heads, kv_heads, vocab)
    tied = 1 if data.get("tie_word_embeddings") else 2
    return Shape(tied * vocab * h + layers * probe.layer_parameters, h, layers, inter, heads, kv_heads, vocab)


@dataclass
class Estimate:
    """The terms of one GPU's memory (GiB), grouped by phase; the peak is the largest phase."""

    states: dict[str, float]  # resident through the run
    phases: dict[str, dict[str, float]]  # what comes on top of the states in each phase
    before_states: tuple[str, ...] = ()  # phases that run before the states reach the GPU

    def phase_totals(self) -> dict[str, float]:
        resident = sum(self.states.values())
        return {
            name: RESERVE_GB + sum(terms.values()) + (0 if name in self.before_states else resident)
            for name, terms in self.phases.items()
        }

    @property
    def peak(self) -> float:
        return max(self.phase_totals().values())


def estimate(config: TrainConfig, shape: Shape, launch: Launch, gpu_gb: float | None = None) -> Estimate:
    """The memory one GPU needs for ``config`` under ``launch`` (``gpu_gb``: for vLLM's share of it)."""
    states = _states(config, shape, launch)
    phases = {"training step": _activations(config, shape)}
    reference, before = _reference(config, shape, launch), ()
    if reference:
        name, size, separate = reference
        if separate:  # TRL 1.16 under FSDP: the policy is sharded onto the GPUs only when train() starts
            phases[name] = {"reference whole": size, "its logits": _logits(config, shape)}
            before = (name,)
        else:
            states["DPO reference"] = size
    if config.method == "grpo":
        phases.update(_generation(config, shape, launch, states, gpu_gb))
    return Estimate(states, phases, before)


def memory_lines(
    config: TrainConfig, launch: Launch, gpu_gb: float | None, where: str
) -> tuple[list[str], str | None]:
    """What ``--plan`` prints of one GPU's memory, and the reason it does not fit (None: it fits, or the
    GPU's memory or the model's shape is not known, which the lines say)."""
    shape = model_shape(config)
    if shape is None:
        return [
            f"memory per GPU: not estimated ({config.model.name_or_path}: shape unknown without loading "
            "it; a local folder's config.json or a known model is needed)"
        ], None
    found = estimate(config, shape, launch, gpu_gb)
    lines = [
        f"memory per GPU (estimate, GiB; {shape.parameters / 1e9:.2f}B parameters; {launch.describe()}):"
    ]
    lines.append("  resident: " + _terms(found.states) + f" + reserve {RESERVE_GB:.1f}")
    totals = found.phase_totals()
    for name, terms in found.phases.items():
        start = "reserve" if name in found.before_states else "resident"
        lines.append(f"  {name}: {start} + " + _terms(terms) + f" = {totals[name]:.1f}")
    reason = _vllm_room(config, shape, gpu_gb) if gpu_gb is not None else None
    if gpu_gb is None:
        lines.append(f"  peak {found.peak:.1f} GiB; not checked: no GPU here and no --gpu-memory-gb")
        return lines, None
    if reason is None and found.peak > gpu_gb:
        worst = max(totals, key=totals.get)
        reason = (
            f"needs {found.peak:.1f} GiB per GPU ({worst}) and a GPU has {gpu_gb:g} GiB ({where}); "
            "shard it (training/accelerate/fsdp.yaml or deepspeed_zero3.yaml), lower the per-device "
            "batch or max_length, turn on gradient_checkpointing, or train LoRA adapters"
        )
    verdict = "fits" if reason is None else "does NOT fit"
    lines.append(f"  peak {found.peak:.1f} of {gpu_gb:g} GiB per GPU ({where}): {verdict}")
    return lines, reason


def _terms(terms: dict[str, float]) -> str:
    return " + ".join(f"{name} {value:.1f}" for name, value in terms.items())


def _vllm_room(config: TrainConfig, shape: Shape, gpu_gb: float) -> str | None:
    """vLLM's share of the GPU must hold its bf16 copy of the weights, with room for its cache."""
    if config.method != "grpo" or not config.grpo.use_vllm:
        return None
    share = config.grpo.vllm_gpu_memory_utilization * gpu_gb
    weights = 2 * shape.parameters / GIB
    if weights < share:
        return None
    return (
        f"grpo.vllm_gpu_memory_utilization: vLLM's share of the GPU ({share:.1f} GiB) cannot hold its bf16 "
        f"weights ({weights:.1f} GiB) and a KV cache; raise it"
    )


def _states(config: TrainConfig, shape: Shape, launch: Launch) -> dict[str, float]:
    n, shards = shape.parameters, launch.shards
    lora = config.model.lora
    if lora is not None:
        adapters = shape.layers * lora.r * _lora_width(shape, lora.target_modules)
        return {
            f"frozen weights ({config.model.dtype})": n * _bytes(config.model.dtype, 2) / shards / GIB,
            f"LoRA adapters, r {lora.r} (fp32 weights, gradients, Adam)": 16 * adapters / shards / GIB,
        }
    if launch.sharding == "zero3":
        master = 0.0 if launch.offload_optimizer else 12 * n / shards / GIB
        return {
            "weights (bf16, sharded)": 2 * n / shards / GIB,
            "gradients (bf16, sharded)": 2 * n / shards / GIB,
            "fp32 master and Adam states"
            + (" (offloaded to CPU)" if launch.offload_optimizer else ""): master,
        }
    out = {
        f"weights ({config.model.dtype} masters)": n * _bytes(config.model.dtype, 4) / shards / GIB,
        "gradients (fp32)": 4 * n / shards / GIB,
        "Adam states (fp32, 2 moments)": 8 * n / shards / GIB,
    }
    if launch.sharding == "fsdp":
        widest = max(shape.layer_parameters, shape.vocab * shape.hidden)
        out["two layers gathered (bf16)"] = 2 * 2 * widest / GIB
    elif config.training.bf16:
        out["autocast bf16 copy of the weights"] = 2 * n / GIB
    return out


def _lora_width(shape: Shape, targets: list[str]) -> int:
    """in + out features of the targeted projections of one layer (a LoRA pair adds r x (in + out))."""
    h, kv, i = shape.hidden, shape.kv, shape.intermediate
    widths = {
        "q_proj": 2 * h,
        "k_proj": h + kv,
        "v_proj": h + kv,
        "o_proj": 2 * h,
        "gate_proj": h + i,
        "up_proj": h + i,
        "down_proj": h + i,
    }
    return sum(widths.get(name, 2 * h) for name in targets)


def _bytes(dtype: str, auto: int) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}.get(dtype, auto)


def _sequences(config: TrainConfig) -> int:
    """Sequences in one micro-batch of a device: a DPO pair is two."""
    batch = config.training.per_device_train_batch_size
    return 2 * batch if config.method == "dpo" else batch


def _activations(config: TrainConfig, shape: Shape) -> dict[str, float]:
    tokens = _sequences(config) * config.training.max_length
    h, kv, i = shape.hidden, shape.kv, shape.intermediate
    per_layer = 2 * (8 * h + 2 * kv + 4 * i) + 8 * h  # bytes a token
    if config.training.gradient_checkpointing:
        saved = tokens * (shape.layers * 2 * h + per_layer)
        label = f"activations of {tokens:,} tokens (checkpointed)"
    else:
        saved = tokens * shape.layers * per_layer
        label = f"activations of {tokens:,} tokens"
    return {label: saved / GIB, "logits and log-softmax (fp32)": _logits(config, shape)}


def _logits(config: TrainConfig, shape: Shape) -> float:
    return _sequences(config) * config.training.max_length * 8 * shape.vocab / GIB


def _reference(config: TrainConfig, shape: Shape, launch: Launch) -> tuple[str, float, bool] | None:
    """DPO's reference: (name, GiB, whether it is a phase of its own before step 1)."""
    if config.method != "dpo":
        return None
    choice, n = config.dpo.reference, shape.parameters
    whole = launch.shards if launch.sharding == "zero3" else 1  # FSDP: root-only, gathered whole
    if choice == "precomputed":
        if launch.sharding != "fsdp":
            return None  # the policy itself, before step 1: nothing more
        return ("reference log-probabilities (before step 1)", n * _bytes(config.model.dtype, 4) / GIB, True)
    dtype = "bfloat16" if choice == "bf16" else config.model.dtype
    return ("DPO reference", n * _bytes(dtype, 4) / whole / GIB, False)


def _generation(
    config: TrainConfig, shape: Shape, launch: Launch, states: dict[str, float], gpu_gb: float | None
) -> dict[str, dict[str, float]]:
    grpo, t = config.grpo, config.training
    batch = t.per_device_train_batch_size * accumulation_steps(t, launch.processes)
    if not grpo.use_vllm:
        cache = batch * t.max_length * 4 * shape.layers * shape.kv / GIB
        return {"generation (transformers)": {f"KV cache of {batch} sequences (bf16)": cache}}
    share = grpo.vllm_gpu_memory_utilization
    name = f"vLLM's share ({share:.0%} of the GPU" + (")" if gpu_gb else "; GPU memory unknown)")
    size = share * (gpu_gb or 0.0)
    if grpo.vllm_enable_sleep_mode:
        return {"generation (vLLM colocate, asleep while training)": {name: size}}
    states[name] = size
    return {}
