"""Recipes that fit what they name: ``skillmix train --plan`` prints one GPU's memory for the paper's SFT, DPO
and GRPO recipes of Mistral and LLaMA under their launchers and refuses a recipe that cannot fit; the same
check refuses a run before anything is loaded; the GPU-only paths (vLLM colocate, FSDP and ZeRO-3 launches)
are refused on CPU in one line each, and their configs (the accelerate files, TRL's GRPOConfig with vLLM)
are validated here. Nothing is loaded or downloaded: the plan reads the recipes only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import run_here

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "training" / "recipes"
JUDGE = ["--grpo-judge-model", "gpt-4o-mini"]
GIB = 2**30
MISTRAL, LLAMA = 7_241_732_096, 13_015_864_320  # parameters (their safetensors' count)
PAPER = {  # recipe -> (parameters, the line of its launcher)
    "mistral-7b-instruct-v0.2/paper": MISTRAL,
    "mistral-7b-instruct-v0.2/dpo": MISTRAL,
    "mistral-7b-instruct-v0.2/grpo": MISTRAL,
    "llama-2-13b-chat/paper": LLAMA,
    "llama-2-13b-chat/dpo": LLAMA,
    "llama-2-13b-chat/grpo": LLAMA,
}


def plan(recipe: str, *flags: str, tmp_path: Path) -> tuple[int, list[str], list[str]]:
    result = run_here(
        ["train", "--config", recipe, "--plan", "--output-dir", str(tmp_path / "never"), *flags]
    )
    assert not (tmp_path / "never").exists()
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines()


@pytest.mark.parametrize("recipe", sorted(PAPER))
def test_the_plan_prints_one_gpus_memory_for_the_papers_recipes_under_their_launchers(recipe, tmp_path):
    code, lines, errors = plan(recipe, *JUDGE, tmp_path=tmp_path)
    assert code == 0 and errors == [], errors
    n = PAPER[recipe]
    (head,) = [line for line in lines if line.startswith("memory per GPU")]
    assert head == (
        f"memory per GPU (estimate, GiB; {n / 1e9:.2f}B parameters; training/accelerate/fsdp.yaml: FSDP 2, "
        "sharded 4 ways, 4 GPU(s)):"
    )
    resident = next(line for line in lines if line.startswith("  resident: "))
    # fp32 masters, fp32 gradients, Adam's two fp32 moments, each sharded over the 4 GPUs: by hand
    assert (
        f"weights (float32 masters) {4 * n / 4 / GIB:.1f} + gradients (fp32) {4 * n / 4 / GIB:.1f}"
        in resident
    )
    assert f"Adam states (fp32, 2 moments) {8 * n / 4 / GIB:.1f}" in resident
    assert "DPO reference" not in resident  # precomputed: no second model is kept
    assert lines[-1].endswith("of 80 GiB per GPU (launcher.gpu_memory_gb / --gpu-memory-gb): fits")
    if "grpo" in recipe:
        assert any(line.startswith("  generation (transformers): resident + KV cache of") for line in lines)
        assert "generation: transformers generate (grpo.use_vllm: false)" in lines
    if "dpo" in recipe:
        assert any(
            line.startswith("  reference log-probabilities (before step 1): reserve + ") for line in lines
        )


def test_a_recipe_that_cannot_fit_is_refused_by_the_plan(tmp_path):
    code, lines, errors = plan("mistral-7b-instruct-v0.2/paper", "--gpu-memory-gb", "16", tmp_path=tmp_path)
    assert code == 2 and len(errors) == 1, errors
    peak = next(line for line in lines if line.startswith("  peak "))
    assert peak.endswith("of 16 GiB per GPU (launcher.gpu_memory_gb / --gpu-memory-gb): does NOT fit")
    needed = peak.split()[1]
    assert errors[0].startswith(
        f"skillmix: error: needs {needed} GiB per GPU (training step) and a GPU has 16 GiB"
    )
    # the Mistral GRPO recipe on the one GPU it used to name: 16 bytes a parameter do not fit 80 GiB
    code, lines, errors = plan(
        "mistral-7b-instruct-v0.2/grpo", *JUDGE, "--num-processes", "1", tmp_path=tmp_path
    )
    assert code == 2 and "gradients (fp32) 27.0" in "\n".join(lines), lines
    assert errors[0].startswith("skillmix: error: needs ") and "a GPU has 80 GiB" in errors[0]


def test_the_lora_recipe_fits_one_gpu_and_vllm_colocate_is_declared_unavailable(tmp_path):
    code, lines, errors = plan("mistral-7b-instruct-v0.2/grpo-lora", *JUDGE, tmp_path=tmp_path)
    assert code == 0, errors
    assert any("recipe launcher: one process, 1 GPU(s)" in line for line in lines)
    assert any(f"frozen weights (bfloat16) {2 * MISTRAL / GIB:.1f}" in line for line in lines)
    flags = ["--grpo-use-vllm", "--gpu-memory-gb", "80"]
    code, lines, errors = plan("mistral-7b-instruct-v0.2/grpo", *JUDGE, *flags, tmp_path=tmp_path)
    assert code == 0, errors
    (generation,) = [line for line in lines if line.startswith("generation: ")]
    assert generation.startswith(
        "generation: vLLM colocate (30% of each GPU, sleep mode True) is UNAVAILABLE: "
    )
    assert "vLLM 0.31.0, the newest TRL 1.16 supports, needs transformers < 5.18" in generation
    asleep = (
        "  generation (vLLM colocate, asleep while training): resident + vLLM's share (30% of the GPU) 24.0"
    )
    assert any(line.startswith(asleep) for line in lines), lines


def test_a_run_that_cannot_fit_is_refused_before_anything_is_loaded(tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        "--config",
        "tiny/smoke",
        "--data",
        str(tmp_path / "no-such-folder"),
        "--output-dir",
        str(out),
    ]
    result = run_here([*argv, "--gpu-memory-gb", "1"])  # the 2 GiB reserve alone does not fit
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("skillmix: error: needs 2.0 GiB per GPU (training step) and a GPU has 1 GiB")
    assert not out.exists()
    assert "no such folder" in run_here(argv).stderr  # without the setting: no check, the data is read


@pytest.mark.parametrize(
    ("changes", "flags", "message"),
    [
        (
            {},
            ["--grpo-use-vllm"],
            "grpo.use_vllm: vLLM generation (colocate) needs a CUDA GPU and none is visible",
        ),
        (
            {"ACCELERATE_USE_FSDP": "true"},
            [],
            "accelerate launch with FSDP needs CUDA GPUs and none is visible",
        ),
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, [], "accelerate launch with DeepSpeed ZeRO-3 needs CUDA GPUs"),
    ],
)
def test_gpu_paths_are_refused_on_cpu_in_one_line(changes, flags, message, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: these paths are not refused")
    out = tmp_path / "run"
    argv = [
        "train",
        "--config",
        "tiny/grpo",
        "--data",
        str(tmp_path / "none"),
        "--output-dir",
        str(out),
        *flags,
    ]
    result = run_here([*argv, *JUDGE], changes)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"skillmix: error: {message}")
    assert not out.exists()


def test_the_accelerate_configs_are_what_the_arithmetic_models(tmp_path):
    from skillmix.config import ConfigError
    from skillmix.training.launch import Launch, read_accelerate_config

    folder = ROOT / "training" / "accelerate"
    assert read_accelerate_config(folder / "fsdp.yaml") == Launch("fsdp", 4, str(folder / "fsdp.yaml"))
    zero3 = read_accelerate_config(folder / "deepspeed_zero3.yaml", processes=8)
    assert (zero3.sharding, zero3.processes, zero3.shards, zero3.offload_optimizer) == ("zero3", 8, 8, False)
    assert read_accelerate_config(folder / "ddp.yaml").shards == 1
    text = (folder / "fsdp.yaml").read_text()
    cases = {
        "fsdp_version: 2": ("fsdp_version: 1", "fsdp_config.fsdp_version: only FSDP 2 is modelled"),
        "fsdp_offload_params: false": ("fsdp_offload_params: true", "fsdp_config.fsdp_offload_params"),
    }
    for old, (new, message) in cases.items():
        bad = tmp_path / f"{new.split(':')[0]}.yaml"
        bad.write_text(text.replace(old, new))
        with pytest.raises(ConfigError, match=message):
            read_accelerate_config(bad)
    stage2 = tmp_path / "zero2.yaml"
    stage2.write_text((folder / "deepspeed_zero3.yaml").read_text().replace("zero_stage: 3", "zero_stage: 2"))
    with pytest.raises(ConfigError, match="only ZeRO stage 3 is modelled"):
        read_accelerate_config(stage2)


def test_grpo_configs_carry_trls_vllm_options_and_every_recipe_builds():
    from skillmix.training.config import build_config
    from skillmix.training.grpo import grpo_config

    changes = {"grpo": {"use_vllm": True, "vllm_gpu_memory_utilization": 0.4, "vllm_enable_sleep_mode": True}}
    args = grpo_config(build_config("tiny/grpo", changes), 1)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == (True, "colocate", 0.4)
    assert args.vllm_enable_sleep_mode is True
    for recipe in sorted(RECIPES.rglob("*.yaml")):
        config = build_config(recipe)
        if config.method == "dpo" and "tiny" not in recipe.parts:
            assert config.training.epochs in (1, 2, 3) and config.dpo.reference in ("bf16", "precomputed")


def test_lora_needs_peft_and_is_refused_without_it_in_one_line(tmp_path):
    from importlib.util import find_spec

    from skillmix.config import ConfigError
    from skillmix.training.config import build_config
    from skillmix.training.launch import check_gpu_paths

    config = build_config(RECIPES / "mistral-7b-instruct-v0.2" / "grpo-lora.yaml")
    assert config.model.lora is not None and config.model.lora.r == 16
    if find_spec("peft") is None:
        with pytest.raises(
            ConfigError, match=r"model\.lora: LoRA needs peft: pip install -e '\.\[train,gpu\]'"
        ):
            check_gpu_paths(config, cuda=True)
    else:
        from skillmix.training.models import lora_config

        assert lora_config(config.model.lora).r == 16
    with pytest.raises(ConfigError, match=r"model\.lora: LoRA adapters are a recipe option of method grpo"):
        build_config("tiny/smoke", {"model": {"lora": {"r": 4}}})


def test_the_dpo_reference_and_vllm_share_in_the_arithmetic():
    from skillmix.training.config import build_config
    from skillmix.training.launch import Launch
    from skillmix.training.memory import SHAPES, estimate

    recipe = RECIPES / "mistral-7b-instruct-v0.2" / "dpo.yaml"
    shape, fsdp, zero3 = (
        SHAPES["mistralai/Mistral-7B-Instruct-v0.2"],
        Launch("fsdp", 4, "x"),
        Launch("zero3", 4, "x"),
    )
    copy = estimate(build_config(recipe, {"dpo": {"reference": "copy"}}), shape, fsdp)
    assert copy.states["DPO reference"] == pytest.approx(4 * MISTRAL / GIB)  # FSDP: gathered whole, fp32
    bf16 = estimate(build_config(recipe, {"dpo": {"reference": "bf16"}}), shape, fsdp)
    assert bf16.states["DPO reference"] == pytest.approx(2 * MISTRAL / GIB)
    sharded = estimate(build_config(recipe, {"dpo": {"reference": "bf16"}}), shape, zero3)
    assert sharded.states["DPO reference"] == pytest.approx(2 * MISTRAL / 4 / GIB)
    assert sum(sharded.states.values()) == pytest.approx(16 * MISTRAL / 4 / GIB + 2 * MISTRAL / 4 / GIB)
    assert estimate(build_config(recipe), shape, zero3).phases.keys() == {"training step"}  # precomputed
    grpo = build_config(RECIPES / "mistral-7b-instruct-v0.2" / "grpo.yaml", {"grpo": {"use_vllm": True}})
    awake = grpo.model_copy(update={"grpo": grpo.grpo.model_copy(update={"vllm_enable_sleep_mode": False})})
    awake = estimate(awake, shape, fsdp, 80.0)
    assert awake.states["vLLM's share (30% of the GPU)"] == pytest.approx(24.0)


def test_lora_adapters_are_what_the_arithmetic_counts():
    pytest.importorskip("peft")  # the gpu extra: not installed by CI
    import torch
    from peft import get_peft_model

    from skillmix.training.config import build_config
    from skillmix.training.launch import Launch
    from skillmix.training.memory import estimate, model_shape
    from skillmix.training.models import load_model, load_tokenizer, lora_config

    config = build_config("tiny/grpo", {"model": {"lora": {"r": 4}}})
    tokenizer = load_tokenizer(config.model, ["an answer with some words in it"] * 40)
    model = get_peft_model(load_model(config.model, tokenizer, 256), lora_config(config.model.lora))
    trainable = [p for p in model.parameters() if p.requires_grad]
    shape, t = model_shape(config), config.model.tiny
    kv = t.hidden_size * t.num_kv_heads // t.num_heads
    by_hand = (
        t.num_layers
        * 4
        * (2 * 2 * t.hidden_size + 2 * (t.hidden_size + kv) + 3 * (t.hidden_size + t.intermediate_size))
    )
    assert sum(p.numel() for p in trainable) == by_hand  # q, k, v, o, gate, up, down: r x (in + out)
    assert {p.dtype for p in trainable} == {torch.float32}
    states = estimate(config, shape, Launch("single", 1, "x")).states
    assert states["LoRA adapters, r 4 (fp32 weights, gradients, Adam)"] == pytest.approx(16 * by_hand / GIB)
