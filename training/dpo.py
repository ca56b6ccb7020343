"""Preference fine-tuning with TRL's ``DPOTrainer`` on the ``preference`` config (``method: dpo``).

    # CPU, seconds: a tiny random model on the pairs of a dataset made with `--generations 4`
    skillmix train --config training/recipes/tiny/dpo.yaml --data out --max-steps 3

    # the paper's student, after (or instead of) its SFT recipe; 4 GPUs
    accelerate launch --config_file training/accelerate/fsdp.yaml -m skillmix.training \\
        --config training/recipes/mistral-7b-instruct-v0.2/dpo.yaml --data org/skill-mix@v1.1.0

A pair is one prompt (the round-1 request) and two continuations of it (answer 1, the round-2 request,
answer 2): a full-mark text (chosen) and a graded text of the same combination that missed a point
(rejected). Only the two answers' tokens, each with the end-of-turn token that closes it, count in the
log-probabilities, as in the SFT loss; the user's round-2 request inside a continuation never does.

TRL 1.16's ``DPOTrainer._prepare_dataset`` would render prompt, prompt + chosen and prompt + rejected with
the chat template and count every completion token, the round-2 request included. So the pairs are
tokenized here by :func:`skillmix.training.masking.tokenize_pairs` (the SFT answer mask, the same code);
:class:`PairCollator` pads them into the batch ``DPOTrainer``'s loss reads (``input_ids``,
``attention_mask``, ``completion_mask``; the chosen sequences first, then the rejected, the halves the
trainer splits); and :func:`trainer_class` is ``DPOTrainer`` with ``_prepare_dataset`` returning the rows as
they are (with ``remove_unused_columns=False``, so that the trainer keeps our columns). ``DPOTrainer``
computes the labels as ``input_ids`` where ``completion_mask`` is 1 and -100 elsewhere, and sums the
per-token log-probabilities of the kept labels only: the sum over exactly our answer tokens.

Everything else is the SFT run's: :func:`skillmix.training.run.check_run` (precision, Hub token, output
folder, datasets, the leakage re-check of both texts of every pair) and :func:`~skillmix.training.run.fit`
(resume, train, save, run record, model card, push).

A pair is trained only if both sides keep every answer token (the round-2 answer and its end-of-turn token)
within ``max_length``; the others are dropped, counted by side, logged and kept in the run record
(``pairs_dropped``). The reference (``dpo.reference``) is the starting model: loaded a second time in
``model.dtype`` (``copy``; a tiny one is rebuilt from its seed), in bf16 (``bf16``: it is never stepped), or
not kept at all (``precomputed``: TRL's ``precompute_ref_log_probs`` computes its log-probabilities with the
policy before step 1, and :class:`PairCollator` passes them to the loss as ``ref_chosen_logps`` /
``ref_rejected_logps``). ``training.epochs`` sizes the run in passes over the kept pairs (``max_steps`` is
then a bound).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.training import data as data_mod
from skillmix.training.config import TrainConfig
from skillmix.training.masking import SIDES, tokenize_pairs
from skillmix.training.models import load_model, load_tokenizer
from skillmix.training.plan import epoch_steps
from skillmix.training.run import Prepared, check_run, fit, trainer_arguments
from skillmix.training.tiny import tokenizer_corpus

REFERENCE_LOGPS = ("ref_chosen_logps", "ref_rejected_logps")  # precomputed: passed to the loss as they are
Log = Callable[[str], None]


def run(config: TrainConfig, log: Log = print) -> Path:
    """Check, tokenize and load everything, then train; returns the output folder."""
    prepared = prepare(config, log)
    return fit(prepared, functools.partial(make_trainer, prepared), log)


def prepare(config: TrainConfig, log: Log = print) -> Prepared:
    """Every check of a DPO run, in the order that fails fastest; nothing is written."""
    _check_settings(config)
    checks = check_run(config)
    pairs = data_mod.pairs(checks.sources)
    texts = [messages for _, chosen, rejected in pairs for messages in (chosen, rejected)]
    tokenizer = load_tokenizer(config.model, tokenizer_corpus(texts, []) if config.model.tiny else [])
    kept = tokenize_pairs(tokenizer, pairs, config.training.max_length, log)
    config = _sized_in_epochs(config, len(kept.rows), checks.accumulation, log)
    log(f"{len(kept.rows)} preference pairs tokenized; loading the model (reference: {config.dpo.reference})")
    args = dpo_config(config, checks.accumulation)
    model = load_model(config.model, tokenizer, config.training.max_length)
    reference = _reference(config, tokenizer)
    dropped = {"total": kept.total, "dropped": kept.dropped, **{side: len(kept.lost[side]) for side in SIDES}}
    return PreparedPairs(
        config, checks, kept.rows, len(kept.rows), tokenizer, model, args, reference, dropped
    )


@dataclass
class PreparedPairs(Prepared):
    """A prepared DPO run, with the pairs dropped for answer tokens past ``max_length`` (by side)."""

    pairs_dropped: dict[str, int] = field(default_factory=dict)


def _reference(config: TrainConfig, tokenizer: Any) -> Any:
    """The frozen reference: the starting model again (in bf16 for ``bf16``), or None for ``precomputed``."""
    if config.dpo.reference == "precomputed":
        return None
    spec = config.model
    if config.dpo.reference == "bf16" and spec.tiny is None:
        spec = spec.model_copy(update={"dtype": "bfloat16"})  # never stepped: no fp32 master needed
    reference = load_model(spec, tokenizer, config.training.max_length)
    if config.dpo.reference == "bf16":
        import torch

        reference = reference.to(torch.bfloat16)
    return reference.eval().requires_grad_(False)


def _sized_in_epochs(config: TrainConfig, pairs: int, accumulation: int, log: Log) -> TrainConfig:
    """``training.epochs`` passes over the kept pairs as ``max_steps`` (the recipe's ``max_steps`` bounds
    it)."""
    t = config.training
    if t.epochs is None:
        return config
    from skillmix.training.config import world_size

    batch = t.per_device_train_batch_size * accumulation * world_size()
    steps = min(epoch_steps(pairs, t.epochs, batch), t.max_steps)
    log(f"{t.epochs} epoch(s) over {pairs} pairs in batches of {batch}: {steps} steps")
    return config.model_copy(update={"training": t.model_copy(update={"max_steps": steps})})


def _check_settings(config: TrainConfig) -> None:
    """What a DPO run cannot take: packed rows (a pair is two padded sequences) and plain text."""
    if config.training.packing:
        raise ConfigError("training.packing: method dpo pads each pair's two sequences; set packing: false")
    if config.data.plain_text is not None:
        raise ConfigError("data.plain_text: method dpo trains on preference pairs only; remove plain_text")


def dpo_config(config: TrainConfig, accumulation: int) -> Any:
    """TRL's ``DPOConfig`` for the recipe: the SFT run's step loop, and the recipe's beta and loss."""
    from trl import DPOConfig

    return DPOConfig(
        **trainer_arguments(config, accumulation),
        max_length=config.training.max_length,  # the rows are truncated to it already (masking.py)
        beta=config.dpo.beta,
        loss_type=[config.dpo.loss_type],
        remove_unused_columns=False,  # our columns (chosen_input_ids, chosen_mask, ...) reach the collator
        precompute_ref_log_probs=config.dpo.reference == "precomputed",
    )


@dataclass
class PairCollator:
    """The batch of ``DPOTrainer``'s loss from pre-tokenized pairs: the chosen sequences, then the rejected
    ones, right-padded with ``pad_token_id``; ``completion_mask`` is each side's answer mask (0 on
    padding); the reference's precomputed ``ref_chosen_logps`` / ``ref_rejected_logps``, when the rows
    carry them, one value a pair."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        sequences = [example[f"{side}_input_ids"] for side in SIDES for example in examples]
        masks = [example[f"{side}_mask"] for side in SIDES for example in examples]
        width = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        completion_mask = torch.zeros_like(input_ids)
        for row, (ids, mask) in enumerate(zip(sequences, masks, strict=True)):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
            completion_mask[row, : len(ids)] = torch.tensor(mask, dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
        for key in REFERENCE_LOGPS:
            if key in examples[0]:
                batch[key] = torch.tensor([float(example[key]) for example in examples])
        return batch


@functools.cache
def trainer_class() -> type:
    """``DPOTrainer`` that trains on the rows as given: its ``_prepare_dataset`` (prompt extraction and
    tokenization with the chat template, counting every completion token) is skipped, since the rows carry
    their tokens and answer-only masks already."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    return PretokenizedDPOTrainer


def make_trainer(prepared: Prepared, callbacks: list[Any]) -> Any:
    """The trainer of ``prepared`` with ``callbacks`` (what :func:`~skillmix.training.run.fit` calls)."""
    from datasets import Dataset

    trainer = trainer_class()(
        model=prepared.model,
        ref_model=prepared.ref_model,  # None when precomputed: TRL then keeps no second model
        args=prepared.args,
        data_collator=PairCollator(prepared.tokenizer.pad_token_id),
        train_dataset=Dataset.from_list(prepared.rows),
        processing_class=prepared.tokenizer,
        callbacks=callbacks,
    )
    trainer.record_extra = {"pairs_dropped": getattr(prepared, "pairs_dropped", {})}  # into the run record
    return trainer
