"""Answer-only labels, token by token, for the Llama-2, Mistral, Gemma and ChatML chat formats, padded and
packed; recipes and their configuration errors.

The tokenizers are built here with the ``tokenizers`` library (a SentencePiece-like BPE for Llama-2 and
Mistral, a byte-level BPE for Gemma and ChatML) and the chat templates are written here, as those models
write them: nothing is downloaded, and nothing of the code under test decides what an answer token is.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from skillmix.config import ConfigError
from skillmix.training.config import TrainingConfig, accumulation_steps, build_config
from skillmix.training.masking import (
    IGNORE_INDEX,
    MaskError,
    end_markers,
    tokenize_conversation,
    tokenize_rows,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "training" / "recipes").rglob("*.yaml"))

TEMPLATES = {  # the formats of Llama-2-Chat, Mistral-Instruct, Gemma and ChatML (Qwen) models
    "llama-2": (
        "{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}"
        "{% endif %}{% endfor %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}"
        "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
        "{% endif %}"
    ),
}
# How each template writes an answer, and what closes it: (strip the answer?, end-of-turn text).
WRITTEN = {"llama-2": (True, " </s>"), "mistral": (False, "</s>"), "gemma": (True, "<end_of_turn>"),
           "chatml": (False, "<|im_end|>")}  # fmt: skip
SPECIALS = {"llama-2": ["<unk>", "<s>", "</s>"], "mistral": ["<unk>", "<s>", "</s>"],
            "gemma": ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
            "chatml": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}  # fmt: skip
FORMATS = list(TEMPLATES)

PROMPT1 = (
    'Compose a short text about the topic "{topic}" that shows these skills: metaphor, red herring.\n'
    "Reply in exactly this form:\nAnswer: <the text>\nExplanation: <how the text shows each skill>"
)
PROMPT2 = "Improve it: at most one sentence, same form as before.\nAnswer: <the revised text>"


def conversation(topic: str, i: int) -> list[dict[str, str]]:
    first = f"Answer: The {topic.lower()} club was a lighthouse; nobody asked about the parking fees.\n" + (
        f"Explanation: the lighthouse is the metaphor, the fees a red herring (version {i})."
    )
    second = f"  \nAnswer: {topic} is a lighthouse — “and the fees?” nobody asked. 🌟\nExplanation: same.\n "
    return [
        {"role": "user", "content": PROMPT1.format(topic=topic)},
        {"role": "assistant", "content": first},
        {"role": "user", "content": PROMPT2},
        {"role": "assistant", "content": second if i % 2 else first},  # the same answer twice, too
    ]


TOPICS = ["Sewing", "Dueling", "Knots", "Beekeeping", "Urbanism", "Gardening", "Triathlons"]
CONVERSATIONS = [conversation(topic, i) for i, topic in enumerate(TOPICS)]


def build_tokenizer(fmt: str):
    """A fast tokenizer made offline: SentencePiece-like (Metaspace) or byte-level BPE, ``fmt``'s template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIALS[fmt]
    corpus = [m["content"] for c in CONVERSATIONS for m in c] + ["[INST] [/INST] user model assistant\n"]
    if fmt in ("llama-2", "mistral"):
        backend = Tokenizer(models.BPE(unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"), pre_tokenizers.Punctuation()]
        )
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
        names = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        names = ({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"} if fmt == "gemma"
                 else {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})  # fmt: skip
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, additional_special_tokens=specials, **names)
    tokenizer.chat_template = TEMPLATES[fmt]
    return tokenizer


@pytest.fixture(scope="module", params=FORMATS)
def fmt_tokenizer(request):
    return request.param, build_tokenizer(request.param)


def expected_spans(fmt: str, rendered: str, messages: list[dict[str, str]]) -> list[tuple[int, int]]:
    """Where the test's own template wrote each answer and its end-of-turn text."""
    strip, end = WRITTEN[fmt]
    spans, cursor = [], 0
    for message in messages:
        text = message["content"].strip() if strip or fmt == "gemma" else message["content"]
        start = rendered.index(text, cursor)
        cursor = start + len(text)
        if message["role"] == "assistant":
            assert rendered.startswith(end, cursor), (fmt, rendered[cursor : cursor + 20])
            spans.append((start, cursor + len(end)))
    return spans


def runs(labels: list[int]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            out.append((start, i))
            start = None
    return out


def test_labels_are_the_answers_token_by_token(fmt_tokenizer):
    fmt, tokenizer = fmt_tokenizer
    for messages in CONVERSATIONS:
        item = tokenize_conversation(tokenizer, messages, max_length=4096)
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        assert item.input_ids == encoded["input_ids"] and not item.truncated
        assert tokenizer.decode(item.input_ids) == rendered  # the tokenization loses nothing
        spans = expected_spans(fmt, rendered, messages)
        for index, (token, (start, end)) in enumerate(
            zip(item.input_ids, encoded["offset_mapping"], strict=True)
        ):
            inside = end > start and any(start < s_end and end > s_start for s_start, s_end in spans)
            piece = rendered[start:end]
            assert item.labels[index] == (token if inside else IGNORE_INDEX), (fmt, index, piece)
        # and read back: two runs of labels, each exactly an answer and its end-of-turn token
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert len(runs(item.labels)) == 2
        for (a, b), answer in zip(runs(item.labels), answers, strict=True):
            text = tokenizer.decode(item.input_ids[a:b])
            assert re.sub(r"\s+", "", text) == re.sub(r"\s+", "", answer + WRITTEN[fmt][1]), (fmt, text)
        assert item.prompt_tokens == runs(item.labels)[0][0]


def test_nothing_of_the_prompts_or_headers_is_trained(fmt_tokenizer):
    fmt, tokenizer = fmt_tokenizer
    item = tokenize_conversation(tokenizer, CONVERSATIONS[1], max_length=4096)
    trained = tokenizer.decode(
        [t for t, label in zip(item.input_ids, item.labels, strict=True) if label != IGNORE_INDEX]
    )
    for never in ("[INST]", "[/INST]", "<|im_start|>", "<start_of_turn>", "model\n", "Compose", "Improve"):
        assert never not in trained, (fmt, never)
    assert item.labels[0] == IGNORE_INDEX


def test_end_markers_close_a_turn_and_never_open_one(fmt_tokenizer):
    fmt, tokenizer = fmt_tokenizer
    markers = end_markers(tokenizer)
    assert WRITTEN[fmt][1].strip() in markers
    assert not set(markers) & {"<|im_start|>", "<start_of_turn>", "<s>", "<bos>", "<pad>", "<unk>"}


def test_a_prompt_longer_than_max_length_names_the_row(fmt_tokenizer):
    _, tokenizer = fmt_tokenizer
    rows = [(f"k2-{i}", c) for i, c in enumerate(CONVERSATIONS)]
    with pytest.raises(MaskError, match=r"max_length 16 is shorter than the prompt of row k2-0 \(\d+ tokens"):
        tokenize_rows(tokenizer, rows, max_length=16, log=lambda m: None)
    notes = []
    long_enough = tokenize_conversation(tokenizer, CONVERSATIONS[0], 4096).prompt_tokens + 3
    tokenized = tokenize_rows(tokenizer, rows, max_length=long_enough, log=notes.append)
    assert all(len(r["input_ids"]) <= long_enough for r in tokenized) and "truncated" in notes[0]


def test_a_template_that_rewrites_the_answer_is_refused():
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] | upper }}{% endfor %}"
    )
    with pytest.raises(MaskError, match="row k1-x: the chat template does not write the user turn"):
        tokenize_rows(tokenizer, [("k1-x", CONVERSATIONS[0])], 1024, log=print)


# ------------------------------------------------------------------ packing through TRL's SFTTrainer


def packed_trainer(tokenizer, rows, tmp_path, max_length=512, batch=2):
    from datasets import Dataset
    from trl import SFTTrainer

    from skillmix.training.config import TinyModel
    from skillmix.training.run import sft_config
    from skillmix.training.tiny import build_model

    config = build_config(
        ROOT / "training/recipes/tiny/smoke.yaml",
        {"training": {"max_length": max_length, "per_device_train_batch_size": batch,
                      "effective_batch_size": batch, "packing": True}, "output_dir": str(tmp_path / "o")},
    )  # fmt: skip
    model = build_model(TinyModel(), tokenizer, max_length)
    trainer = SFTTrainer(model=model, args=sft_config(config, 1), train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer)  # fmt: skip
    return trainer, model


def test_packing_keeps_every_answer_mask_across_boundaries(fmt_tokenizer, tmp_path):
    fmt, tokenizer = fmt_tokenizer
    rows = [tokenize_conversation(tokenizer, m, 512).row() for m in CONVERSATIONS]
    trainer, _ = packed_trainer(tokenizer, rows, tmp_path)
    assert trainer.padding_free and len(trainer.train_dataset) < len(rows)  # several samples per packed row
    seen = []
    for batch in trainer.get_train_dataloader():
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch  # padding-free
        ids, labels, positions = (batch[k][0].tolist() for k in ("input_ids", "labels", "position_ids"))
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
        assert len(starts) > 2, "a batch should hold several packed samples"
        for a, b in itertools.pairwise(starts):
            match = [r for r in rows if r["input_ids"] == ids[a:b]]
            assert match, f"{fmt}: a packed segment is not one whole sample"
            assert labels[a:b] == match[0]["labels"], f"{fmt}: the answer mask changed when packed"
            seen.append(ids[a:b])
    assert sorted(seen) == sorted(r["input_ids"] for r in rows)  # every sample, once


def test_packed_samples_do_not_see_each_other(tmp_path):
    """Position ids reset the causal mask at every packed boundary (on CPU with SDPA too): each packed
    sample gets the logits it gets alone, and the loss is their token-weighted mean."""
    import torch

    tokenizer = build_tokenizer("chatml")
    rows = [tokenize_conversation(tokenizer, m, 512).row() for m in CONVERSATIONS[:4]]
    trainer, model = packed_trainer(tokenizer, rows, tmp_path, batch=4)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels, positions = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = [*(positions == 0).nonzero().flatten().tolist(), len(ids)]
    model.eval()
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"]
        )
        unreset = model(input_ids=batch["input_ids"]).logits[0]  # what a packed batch without resets sees
        total, count, gap = 0.0, 0, 0.0
        for a, b in itertools.pairwise(starts):
            alone = model(input_ids=ids[a:b][None], labels=labels[a:b][None])
            assert torch.allclose(packed.logits[0, a:b], alone.logits[0], atol=1e-5)
            gap = max(gap, float((unreset[a:b] - alone.logits[0]).abs().max()))
            n = int((labels[a + 1 : b] != IGNORE_INDEX).sum())
            total, count = total + alone.loss.item() * n, count + n
    assert gap > 1e-2  # the check above can tell: without the resets the samples do see each other
    assert packed.loss.item() == pytest.approx(total / count, rel=1e-5)


# ------------------------------------------------------------------ recipes and configuration errors


def test_every_recipe_is_valid_and_the_paper_recipes_follow_the_paper():
    assert len(RECIPES) >= 4 and any("smoke" in p.name for p in RECIPES)
    for path in RECIPES:
        config = build_config(path)
        assert config.model.tiny is not None if path.parent.name == "tiny" else config.training.bf16
    for name in ("mistral-7b-instruct-v0.2/paper.yaml", "llama-2-13b-chat/paper.yaml"):
        t = build_config(ROOT / "training/recipes" / name).training
        assert (t.max_steps, t.learning_rate, t.warmup_steps, t.max_length) == (4000, 2e-5, 64, 1024)
        assert (
            t.lr_scheduler_type == "constant_with_warmup"
            and t.weight_decay == 0.0
            and t.optim == "adamw_torch"
        )
        assert t.bf16 and t.gradient_checkpointing and t.effective_batch_size == 64
        for gpus in (1, 2, 4, 8):
            assert t.per_device_train_batch_size * accumulation_steps(t, gpus) * gpus == 64


def test_accelerate_configs_shard_over_several_gpus():
    folder = ROOT / "training" / "accelerate"
    fsdp = yaml.safe_load((folder / "fsdp.yaml").read_text())
    zero3 = yaml.safe_load((folder / "deepspeed_zero3.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP" and fsdp["num_processes"] > 1
    assert zero3["distributed_type"] == "DEEPSPEED" and zero3["deepspeed_config"]["zero_stage"] == 3


def test_effective_batch_mismatch_is_one_error():
    with pytest.raises(ConfigError, match="effective_batch_size: 64 is not a multiple of per-device batch 3"):
        accumulation_steps(TrainingConfig(per_device_train_batch_size=3, effective_batch_size=64), 4)
    with pytest.raises(ConfigError, match="gradient_accumulation_steps: 2 x per-device batch 4"):
        accumulation_steps(TrainingConfig(per_device_train_batch_size=4, effective_batch_size=64,
                                          gradient_accumulation_steps=2), 4)  # fmt: skip


def test_recipe_errors_name_the_file_or_the_flag_and_the_key(tmp_path):
    import argparse

    from skillmix.config import overrides
    from skillmix.training.config import add_train_flags

    smoke = yaml.safe_load((ROOT / "training/recipes/tiny/smoke.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**smoke, "training": {**smoke["training"], "max_stepz": 3}}))
    with pytest.raises(ConfigError, match=r"^recipe .*bad.yaml: training.max_stepz: unknown key$"):
        build_config(bad)
    bad.write_text(yaml.safe_dump({**smoke, "model": {**smoke["model"], "dtype": "int3"}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: model.dtype: must be 'auto'"):
        build_config(bad)
    parser = argparse.ArgumentParser()
    flags = add_train_flags(parser)
    args = parser.parse_args(["--config", "x", "--max-steps", "0", "--data", "org/sm@v1.0.0"])
    with pytest.raises(ConfigError, match=r"^--max-steps \(training.max_steps\): must be >= 1, got 0$"):
        build_config(ROOT / "training/recipes/tiny/smoke.yaml", overrides(args, flags), flags)
    args = parser.parse_args(
        ["--config", "x", "--learning-rate", "0.5", "--no-packing", "--push-to-hub", "o/m"]
    )
    config = build_config(
        ROOT / "training/recipes/tiny/smoke.yaml", overrides(args, flags), flags, "org/sm@v1.0.0"
    )
    assert (config.training.learning_rate, config.training.packing, config.hub.push_to_hub) == (
        0.5,
        False,
        "o/m",
    )
    assert (config.data.datasets[0].path, config.data.datasets[0].revision) == ("org/sm", "v1.0.0")
