"""Tokens/s and model FLOPs utilisation (MFU) of the SFT step loop: padded vs packed batches, in one run.

    python bench/training.py --tiny               # CPU, a tiny shape, a minute: shows the script works
    python bench/training.py                      # one GPU: a Mistral-7B-shaped model, random bf16 weights
    python bench/training.py --layers 8 --attn flash_attention_2 --json out.json

Both modes train the same model from the same random start, one epoch over the same synthetic Skill-Mix-like
samples (lengths drawn uniformly between ``--min-len`` and ``--max-len`` tokens; the first 60% of each is
prompt, masked out of the loss), with TRL's own collator: **padded** batches of ``--batch`` samples padded
to the longest (TRL's default), and **packed** rows of ``--max-length`` tokens (TRL's best-fit-decreasing
packing, padding-free: ``--packed-batch`` rows flattened into one sequence, position ids reset at every
sample; with ``sdpa`` the flattened rows attend through one dense block-diagonal mask, with
``flash_attention_2`` (the ``gpu`` extra) each sample attends only to itself, at no cost for the others).
AdamW, gradient checkpointing on a GPU. Each mode runs ``--repeats`` epochs, interleaved with the other
mode's, from a fresh model each time; the median epoch is reported. Nothing is downloaded.

tokens/s counts the samples' own tokens (no padding). MFU = model FLOPs of those tokens / time / peak,
with model FLOPs = 6 x parameters per token plus causal attention (6 x layers x hidden x L^2 per sample of
length L). The peak is ``--peak-tflops``, else the dense bf16 peak of a known GPU, else (CPU) the fp32
matmul rate measured at start. The last line is the packed/padded ratio of tokens/s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from typing import Any

GPU_PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)
SHAPES = {  # Mistral-7B-v0.2 and a tiny model of the same family
    "7b": dict(zip(SHAPE_KEYS, (4096, 14336, 32, 32, 8, 32000), strict=True)),
    "tiny": dict(zip(SHAPE_KEYS, (128, 384, 4, 4, 2, 2048), strict=True)),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on CPU (defaults scaled down)")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers of the same shape")
    parser.add_argument("--samples", type=int, default=None, help="samples in the epoch (256; tiny 96)")
    parser.add_argument("--min-len", type=int, default=None, help="shortest sample (300; tiny 60)")
    parser.add_argument("--max-len", type=int, default=None, help="longest sample (900; tiny 240)")
    parser.add_argument("--max-length", type=int, default=None, help="packed row length (1024; tiny 256)")
    parser.add_argument("--batch", type=int, default=None, help="samples or packed rows per step (8; tiny 4)")
    what = "packed rows per step (default --batch); with sdpa a step's rows attend densely as one sequence"
    parser.add_argument("--packed-batch", type=int, default=None, help=what)
    parser.add_argument("--attn", default="sdpa", help="attention: sdpa, flash_attention_2, eager")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak of the device, TFLOP/s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None, help="epochs per mode, interleaved (1; tiny 3)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    defaults = (96, 60, 240, 256, 4, 3) if args.tiny else (256, 300, 900, 1024, 8, 1)
    names = ("samples", "min_len", "max_len", "max_length", "batch", "repeats")
    for name, value in zip(names, defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def synthetic_samples(args: argparse.Namespace, vocab: int) -> list[dict[str, list[int]]]:
    """Token ids with Skill-Mix-like lengths; labels -100 on the first 60% (the prompts)."""
    rng = random.Random(args.seed)
    rows = []
    for _ in range(args.samples):
        length = rng.randint(args.min_len, min(args.max_len, args.max_length))
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = int(0.6 * length)
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def padded_batches(rows: list[dict], batch: int, seed: int) -> list[dict[str, Any]]:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(pad_token_id=0)
    order = rows[:]
    random.Random(seed).shuffle(order)
    return [collate(order[i : i + batch]) for i in range(0, len(order), batch)]


def packed_batches(rows: list[dict], batch: int, max_length: int) -> list[dict[str, Any]]:
    from datasets import Dataset
    from trl import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    packed = pack_dataset(Dataset.from_list(rows), max_length, "bfd").to_list()
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    return [collate(packed[i : i + batch]) for i in range(0, len(packed), batch)]


def build_model(args: argparse.Namespace, device: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    shape = dict(SHAPES["tiny" if args.tiny else "7b"])
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    config = MistralConfig(**shape, max_position_embeddings=max(args.max_length, 2048), sliding_window=None)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=args.attn)
    if device.type == "cuda":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model


def model_flops(model: Any, lengths: list[int]) -> float:
    """Training FLOPs of samples of these lengths: 6 N per token plus causal attention."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    return sum(6 * params * n + 6 * cfg.num_hidden_layers * cfg.hidden_size * n * n for n in lengths)


def run_epoch(model: Any, batches: list[dict[str, Any]], device: Any, warmup: int = 2) -> float:
    """Seconds for the batches after ``warmup`` of them (forward, backward, AdamW step)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    model.train()

    def step(batch: dict[str, Any]) -> None:
        inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "seq_idx"}
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    sync(device)
    started = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    sync(device)
    return time.perf_counter() - started


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_tflops(args: argparse.Namespace, device: Any) -> tuple[float, str]:
    import torch

    if args.peak_tflops:
        return args.peak_tflops, "given"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(0)
        for key, value in GPU_PEAKS.items():
            if key in name:
                return value, f"{name} dense bf16"
        return float("nan"), f"{name}: unknown peak, pass --peak-tflops"
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    started, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    seconds = time.perf_counter() - started
    threads = torch.get_num_threads()
    return 2 * 1024**3 * reps / seconds / 1e12, f"CPU fp32 matmul, measured ({threads} threads)"


def measure(args: argparse.Namespace, mode: str, rows: list[dict], device: Any, peak: float) -> dict:
    """One mode's epoch from the same random start: tokens/s and MFU over the timed batches."""
    model = build_model(args, device)
    if mode == "padded":
        batches = padded_batches(rows, args.batch, args.seed)
    else:
        batches = packed_batches(rows, args.packed_batch or args.batch, args.max_length)
    seconds = run_epoch(model, batches, device)
    timed = batches[2:]
    lengths = [n for b in timed for n in sample_lengths(b)]
    computed = sum(int(b["input_ids"].numel()) for b in timed)
    flops = model_flops(model, lengths)
    del model
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
    return {
        "mode": mode,
        "steps": len(timed),
        "tokens": sum(lengths),
        "computed_tokens": computed,
        "seconds": seconds,
        "tokens_per_s": sum(lengths) / seconds,
        "mfu": flops / seconds / (peak * 1e12),
    }


def median_run(runs: list[dict]) -> dict:
    """The run of median tokens/s (the repeats of a mode interleave with the other mode's)."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_s"])
    return {**ordered[len(ordered) // 2], "repeats": [round(r["tokens_per_s"], 1) for r in runs]}


def sample_lengths(batch: dict[str, Any]) -> list[int]:
    """The samples' own lengths in a padded or a packed batch."""
    if "attention_mask" in batch:
        return [int(n) for n in batch["attention_mask"].sum(dim=1)]
    positions = batch["position_ids"][0]
    starts = [*(positions == 0).nonzero().flatten().tolist(), positions.shape[0]]
    return [b - a for a, b in itertools.pairwise(starts) if b > a]


def main() -> None:
    import torch

    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    peak, peak_source = peak_tflops(args, device)
    vocab = SHAPES["tiny" if args.tiny else "7b"]["vocab_size"]
    rows = synthetic_samples(args, vocab)
    print(
        f"device {device} ({peak_source}: {peak:.2f} TFLOP/s); {args.samples} samples of "
        f"{args.min_len}-{args.max_len} tokens, batch {args.batch}, packed rows of {args.max_length}, "
        f"attention {args.attn}"
    )
    runs = [
        measure(args, mode, rows, device, peak) for _ in range(args.repeats) for mode in ("padded", "packed")
    ]
    results = [median_run([r for r in runs if r["mode"] == mode]) for mode in ("padded", "packed")]
    print(
        f"{'mode':<8} {'steps':>5} {'tokens':>8} {'computed':>9} {'seconds':>8} {'tokens/s':>10} {'MFU':>7}"
    )
    for r in results:
        print(
            f"{r['mode']:<8} {r['steps']:>5} {r['tokens']:>8} {r['computed_tokens']:>9} "
            f"{r['seconds']:>8.2f} {r['tokens_per_s']:>10.1f} {100 * r['mfu']:>6.2f}%  "
            f"(tokens/s of each repeat: {r['repeats']})"
        )
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(f"packed / padded tokens/s: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "device": str(device),
                    "peak": peak_source,
                    "peak_tflops": peak,
                    "results": results,
                    "ratio": ratio,
                    "args": vars(args),
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
