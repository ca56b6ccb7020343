"""One fine-tuning run, as named steps: prepare everything that can fail, then train, save, card, push.

:func:`prepare` does every check a recipe can fail (the Hub token, the output folder, the datasets and
their configs and revisions, the leakage re-check, the tokenizer and chat template, the answer masks and
``max_length``, the model) without writing anything; :func:`train` creates the output folder only then,
runs TRL's ``SFTTrainer`` on the pre-tokenized rows, saves the model with its tokenizer, writes the card
and the loss curve, and pushes when asked.

The parts every method shares are public: :func:`check_run` (the checks before anything is tokenized),
:func:`trainer_arguments` (the step loop's ``TrainingArguments`` values) and :func:`fit` (the output
folder, resume, train, save, card, push around any TRL trainer); :mod:`.dpo` runs through them too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.training import data as data_mod
from skillmix.training.card import RunRecord, hardware, losses_from, plot_loss, render_model_card
from skillmix.training.config import TrainConfig, accumulation_steps, world_size
from skillmix.training.hub import check_access, checkpoint_pusher, existing_metadata, hub_token, push_final
from skillmix.training.leakage import check_leakage
from skillmix.training.masking import tokenize_rows, tokenize_text
from skillmix.training.models import check_precision, load_model, load_tokenizer, parameter_count
from skillmix.training.tiny import tokenizer_corpus

TRAIN_RECORD_FILE = "skillmix_train.json"
Log = Callable[[str], None]


@dataclass
class Checks:
    """What every method checks before anything is tokenized or loaded."""

    accumulation: int
    token: str | None
    resume: bool
    sources: list[data_mod.LoadedSource]
    leakage: list[dict[str, Any]]


@dataclass
class Prepared:
    """Everything a run needs, checked; nothing has been written yet."""

    config: TrainConfig
    checks: Checks
    rows: list[dict[str, list[int]]]
    skillmix_rows: int  # conversations (SFT) or preference pairs (DPO); the plain texts are the rest
    tokenizer: Any
    model: Any
    args: Any  # TRL's config, made before the model so that ZeRO-3 builds it partitioned
    ref_model: Any = None  # DPO's frozen reference


def check_run(config: TrainConfig) -> Checks:
    """The checks of every method, in the order that fails fastest: the batch, the precision, the Hub
    token, the output folder, the datasets and their configs, the leakage re-check."""
    accumulation = accumulation_steps(config.training)
    check_precision(config.model)
    token = _hub_access(config)
    resume = _output_state(config)
    sources = data_mod.load_sources(config.data, config.method)
    leakage = check_leakage(sources, config.data.evaluation)
    return Checks(accumulation, token, resume, sources, leakage)


def prepare(config: TrainConfig, log: Log = print) -> Prepared:
    """Every check of an SFT run, in the order that fails fastest; raises ``ConfigError``/``ValueError``."""
    checks = check_run(config)
    conversations = data_mod.conversations(checks.sources)
    plain = _plain_texts(config, len(conversations), log)
    corpus = tokenizer_corpus([m for _, m in conversations], plain) if config.model.tiny else []
    tokenizer = load_tokenizer(config.model, corpus)
    rows = tokenize_rows(tokenizer, conversations, config.training.max_length, log)
    rows += [tokenize_text(tokenizer, text, config.training.max_length).row() for text in plain]
    log(f"{len(conversations)} conversations and {len(plain)} plain texts tokenized; loading the model")
    args = sft_config(config, checks.accumulation)
    model = load_model(config.model, tokenizer, config.training.max_length)
    return Prepared(config, checks, rows, len(conversations), tokenizer, model, args)


def _hub_access(config: TrainConfig) -> str | None:
    if not config.hub.push_to_hub:
        return None
    token = hub_token()
    check_access(config.hub.push_to_hub, token)
    return token


def _output_state(config: TrainConfig) -> bool:
    """Whether to resume: the folder is new or empty (no), holds this run (yes), or another run (refused)."""
    out = config.output_path()
    if not out.exists() or not any(out.iterdir()):
        return False
    record_file = out / TRAIN_RECORD_FILE
    if not record_file.is_file():
        raise ConfigError(f"output folder {out} is not empty and holds no skillmix run; choose another one")
    recorded = json.loads(record_file.read_text(encoding="utf-8")).get("fingerprint")
    if recorded != config.fingerprint():
        raise ConfigError(f"output folder {out} holds a run with other settings; choose another one")
    return True


def _plain_texts(config: TrainConfig, conversations: int, log: Log) -> list[str]:
    spec = config.data.plain_text
    if spec is None:
        return []
    return data_mod.load_plain_text(spec, round(spec.ratio * conversations), config.data.seed, log)


def sft_config(config: TrainConfig, accumulation: int) -> Any:
    """TRL's ``SFTConfig`` for the recipe (TRL's own Hub push stays off: :mod:`.hub` does it)."""
    from trl import SFTConfig

    t = config.training
    return SFTConfig(
        **trainer_arguments(config, accumulation),
        max_length=t.max_length,
        packing=t.packing,
        packing_strategy="bfd",
    )


def trainer_arguments(config: TrainConfig, accumulation: int) -> dict[str, Any]:
    """The ``TrainingArguments`` values of the recipe that every TRL config of a method takes."""
    import torch

    t = config.training
    return dict(
        output_dir=str(config.output_path()),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        optim=t.optim,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=t.bf16,
        fp16=False,
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name of gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,  # the order of the rows is the training's randomness; data.seed picks the rows
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to=t.report_to,
        push_to_hub=False,
        # without CUDA, accelerate runs several processes as one distributed (gloo) job only when asked for
        # the CPU: otherwise each rank would train alone on every sample
        use_cpu=not torch.cuda.is_available(),
    )


def train(prepared: Prepared, log: Log = print) -> Path:
    """Train with TRL's ``SFTTrainer``, save, write the card and push; returns the output folder."""
    from datasets import Dataset
    from trl import SFTTrainer

    def trainer(callbacks: list[Any]) -> Any:
        return SFTTrainer(
            model=prepared.model,
            args=prepared.args,
            train_dataset=Dataset.from_list(prepared.rows),
            processing_class=prepared.tokenizer,
            callbacks=callbacks,
        )

    return fit(prepared, trainer, log)


def fit(prepared: Prepared, make_trainer: Callable[[list[Any]], Any], log: Log = print) -> Path:
    """The output folder, the trainer ``make_trainer(callbacks)`` makes, resumed when the folder holds
    this run, trained, saved, carded and pushed; returns the output folder."""
    config, out = prepared.config, prepared.config.output_path()
    out.mkdir(parents=True, exist_ok=True)
    if main_process():
        _write_run_file(out, config)
    callbacks = []
    token = prepared.checks.token
    if config.hub.push_to_hub and config.hub.checkpoints_branch and token:
        pusher = checkpoint_pusher(
            config.hub.push_to_hub, config.hub.checkpoints_branch, token, config.hub.private, log
        )
        callbacks.append(pusher)
    trainer = make_trainer(callbacks)
    checkpoint = _resume_point(out, prepared.checks.resume, log)
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.monotonic() - started
    trainer.save_model(str(out))
    for callback in callbacks:
        callback.wait()  # the checkpoint uploads still under way, before the final push
    if trainer.is_world_process_zero():
        record = _record(prepared, trainer, wall)
        record.extra.update(getattr(trainer, "record_extra", {}))  # a method's own (grpo: the judge, a stop)
        _write_run_file(out, config, asdict(record))
        _finish(prepared, record, out, log)
    _end(getattr(trainer, "trainer", trainer))  # GRPO's stop-at-the-cap wrapper holds TRL's trainer
    return out


def _end(trainer: Any) -> None:
    """The end of the launch's process group, once the wrapped (DDP) model is gone.

    ``Trainer.end`` destroys the process group. A ``DistributedDataParallel`` model still alive then holds
    the group's last reference, and its destruction (with the GIL held) joins gloo's worker threads while
    one of them waits for the GIL to free a tensor: the process never exits (pytorch/pytorch#56297; seen
    here as rank 0 of tests/test_training_ddp.py hanging after its last checkpoint). So the wrapped model
    and accelerate's references to it go first, while the group is still registered, and the group's own
    destructor (which releases the GIL) runs last."""
    import gc

    if not hasattr(trainer, "end"):
        return
    trainer.model_wrapped = trainer.model
    trainer.accelerator.free_memory()
    gc.collect()
    trainer.end()


def _resume_point(out: Path, resume: bool, log: Log) -> str | None:
    if not resume:
        return None
    checkpoint = _last_checkpoint(out)
    log(
        f"resuming from {checkpoint}"
        if checkpoint
        else f"{out} holds this run but no checkpoint: from step 0"
    )
    return checkpoint


def main_process() -> bool:
    """Rank 0 of the launch (or the only process): the one that writes the run's own files."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _write_run_file(out: Path, config: TrainConfig, record: dict[str, Any] | None = None) -> None:
    """The run's fingerprint (and, once it is over, its record), written whole (a rank that reads the folder
    sees it or nothing)."""
    payload = {"fingerprint": config.fingerprint(), "config": config.model_dump(exclude={"hub"})}
    if record is not None:
        payload["record"] = record
    staging = out / f".{TRAIN_RECORD_FILE}.tmp"
    staging.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
    staging.replace(out / TRAIN_RECORD_FILE)


def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out))


def _record(prepared: Prepared, trainer: Any, wall: float) -> RunRecord:
    return RunRecord(
        method=prepared.config.method,
        sources=[item.describe() for item in prepared.checks.sources],
        rows=prepared.skillmix_rows,
        plain_rows=len(prepared.rows) - prepared.skillmix_rows,
        parameters=parameter_count(prepared.model),
        processes=world_size(),
        accumulation=prepared.checks.accumulation,
        wall_seconds=wall,
        steps=trainer.state.global_step,
        hardware=hardware(),
        losses=losses_from(trainer.state.log_history),
        leakage=prepared.checks.leakage,
    )


def _finish(prepared: Any, record: RunRecord, out: Path, log: Log) -> None:
    """The loss curve, the card and the metrics on disk; then the push, if asked."""
    config, repo, token = prepared.config, prepared.config.hub.push_to_hub, prepared.checks.token
    figure = plot_loss(record.losses, out / "loss.png")
    existing = existing_metadata(repo, token) if repo and token else {}
    title = repo or f"{config.model.name_or_path} fine-tuned on Skill-Mix"
    (out / "README.md").write_text(
        render_model_card(config, record, title, existing, figure), encoding="utf-8"
    )
    (out / "train_losses.json").write_text(json.dumps(record.losses), encoding="utf-8")
    losses = record.losses
    if losses:
        first, last = losses[0][1], losses[-1][1]
        log(f"trained {record.steps} steps in {record.wall_seconds:.1f} s; loss {first:.3f} -> {last:.3f}")
    if repo and token:
        message = f"Fine-tuned on Skill-Mix ({config.method.upper()}, {record.steps} steps)"
        oid = push_final(out, repo, token, config.hub.private, message)
        log(f"pushed the model and its card to {repo} (commit {oid[:10]})")
    log(f"model, tokenizer and card written to {out}")
