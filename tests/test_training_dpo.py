"""``skillmix train --method dpo``: answer-only masks over chosen and rejected, token by token, for a
template with turn tokens (ChatML) and two without generation markers (Llama-2, Mistral); the collator's
batch; the log-probabilities DPOTrainer's loss uses, against a sum computed here over exactly the answer
tokens; the tiny recipe end to end through the command; and the recipes of the wrong method refused.

The dataset folder is written here with pyarrow (a manifest and one ``preference`` Parquet file), with
skills and topics of the training side of the split so that the leakage re-check passes; the tiny model
and tokenizer are built locally: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY_DPO = ROOT / "training" / "recipes" / "tiny" / "dpo.yaml"
PROMPT1 = (
    'Compose a short text about "{topic}" that shows {skills}.\nReply as:\nAnswer: <text>\nExplanation: <why>'
)
PROMPT2 = "Improve it: at most two sentences, same form as before.\nAnswer: <the revised text>"
END = {"chatml": "<|im_end|>", "llama-2": "</s>", "mistral": "</s>"}  # what closes an answer


def answers(topic: str, good: bool) -> tuple[str, str]:
    quality = "a lighthouse; nobody asked about the fees" if good else "nice, and the fees are high"
    first = f"Answer: The {topic.lower()} club was {quality}.\nExplanation: metaphor, then a red herring."
    return first, f"Answer: {topic} is {quality}.\nExplanation: the same, shorter."


def pair_row(i: int, skills: list[str], topic: str) -> dict:
    (c1, c2), (r1, r2) = answers(topic, True), answers(topic, False)
    second = {"role": "user", "content": PROMPT2}
    return {
        "id": f"c{i}:g0>g1",
        "combination": f"c{i}",
        "k": len(skills),
        "setting": "train",
        "skills": skills,
        "categories": ["rhetorical", "logical"][: len(skills)],
        "topic": topic,
        "prompt": [{"role": "user", "content": PROMPT1.format(topic=topic, skills=", ".join(skills))}],
        "chosen": [{"role": "assistant", "content": c1}, second, {"role": "assistant", "content": c2}],
        "rejected": [{"role": "assistant", "content": r1}, second, {"role": "assistant", "content": r2}],
        "chosen_id": f"c{i}:g0",
        "rejected_id": f"c{i}:g1",
        "chosen_points": [1, 1, 1, 1],
        "rejected_points": [1, 0, 1, 1],
        "margin": 1,
        "pairing": "widest",
        "teacher": "fake-teacher",
        "judge": "fake-judge",
    }


def training_rows(n: int = 4) -> list[dict]:
    """Pairs on training skills and topics of the builtin catalog's split 0 (the leakage re-check passes)."""
    from skillmix.catalog import load_catalog

    split = load_catalog().split(0)
    skills = [s.name for s in split.training_skills]
    return [pair_row(i, skills[2 * i : 2 * i + 2], split.training_topics[i]) for i in range(n)]


def write_folder(path: Path, configs: dict[str, list[dict]]) -> Path:
    """A dataset folder as `skillmix dataset` lays it out: manifest.json and one Parquet file per config."""
    from skillmix.catalog import load_catalog

    listed = {}
    for name, rows in configs.items():
        (path / name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), path / name / "train-00000-of-00001.parquet")
        listed[name] = {"path": f"{name}/train-00000-of-00001.parquet", "rows": len(rows)}
    manifest = {"skillmix_manifest": 1, "config": {"catalog": "builtin", "split_seed": 0},
                "models": {"judge": {"model": "fake-judge"}}, "configs": listed,
                "split": {"hash": load_catalog().split(0).hash}, "seeds": {"sampling": 0}}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("data") / "pairs", {"preference": training_rows()})


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """The ``[start, end)`` runs of 1 in ``mask``."""
    out, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            out.append((start, i))
            start = None
    return out


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ------------------------------------------------------------------ (a) the masks, token by token


@pytest.mark.parametrize("fmt", ["chatml", "llama-2", "mistral"])
def test_the_mask_is_the_answers_of_chosen_and_rejected_token_by_token(fmt):
    from skillmix.training.config import DatasetSource
    from skillmix.training.data import LoadedSource, pairs
    from skillmix.training.dpo import PairCollator
    from skillmix.training.masking import tokenize_pairs
    from skillmix.training.tiny import build_tokenizer

    rows = training_rows(2)
    source = LoadedSource(DatasetSource(path="x", configs=["preference"]), {}, {"preference": rows})
    triples = pairs([source])
    tokenizer = build_tokenizer([m["content"] for _, c, r in triples for m in c + r], 400, fmt)
    tokenized = tokenize_pairs(tokenizer, triples, 1024, log=print).rows
    batch = PairCollator(tokenizer.pad_token_id)(tokenized)
    assert batch["input_ids"].shape[0] == 4  # chosen 0, chosen 1, rejected 0, rejected 1
    for index, (row, side) in enumerate([(0, "chosen"), (1, "chosen"), (0, "rejected"), (1, "rejected")]):
        ids, mask = tokenized[row][f"{side}_input_ids"], tokenized[row][f"{side}_mask"]
        assert batch["input_ids"][index, : len(ids)].tolist() == ids
        assert batch["completion_mask"][index].tolist() == mask + [0] * (
            batch["input_ids"].shape[1] - len(ids)
        )
        assert batch["attention_mask"][index].sum().item() == len(ids)
        (a, b), (c, d) = runs(mask)  # two runs: answer 1 and answer 2, each with its end-of-turn token
        expected = [m["content"] for m in rows[row][side] if m["role"] == "assistant"]
        assert squeeze(tokenizer.decode(ids[a:b])) == squeeze(expected[0] + END[fmt]), (fmt, side)
        assert squeeze(tokenizer.decode(ids[c:d])) == squeeze(expected[1] + END[fmt]), (fmt, side)
        prompt, between = tokenizer.decode(ids[:a]), tokenizer.decode(ids[b:c])
        assert rows[row]["prompt"][0]["content"].split("\n")[0].strip() in prompt
        assert squeeze(PROMPT2) in squeeze(between)  # the user's round-2 request: never counted
        assert squeeze(tokenizer.decode(ids[d:])) in ("", "\n")  # after answer 2, nothing is counted
    assert (batch["completion_mask"] <= batch["attention_mask"]).all()  # padding: 0 in both


# ------------------------------------------------------------------ (b) the log-probabilities DPO uses


def test_the_trainer_logps_are_sums_over_exactly_the_answer_tokens(folder, tmp_path):
    import torch

    from skillmix.training.config import build_config
    from skillmix.training.dpo import PairCollator, make_trainer, prepare

    config = build_config(TINY_DPO, {"output_dir": str(tmp_path / "o")}, data_location=str(folder))
    prepared = prepare(config, log=lambda m: None)
    assert prepared.skillmix_rows == 4 and prepared.ref_model is not prepared.model
    assert not (tmp_path / "o").exists()  # prepared: nothing written yet
    trainer = make_trainer(prepared, [])
    batch = PairCollator(prepared.tokenizer.pad_token_id)(prepared.rows[:2])
    model = trainer.model.train()
    with torch.no_grad():
        trainer.compute_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[
        ..., 0
    ]
    answer_only = (per_token * batch["completion_mask"][:, 1:]).sum(1)
    every_completion = (per_token * _from_first_answer(batch["completion_mask"])[:, 1:]).sum(1)
    metrics = trainer._metrics["train"]
    chosen, rejected = answer_only.chunk(2)
    assert math.isclose(metrics["logps/chosen"][-1], chosen.mean().item(), rel_tol=1e-4, abs_tol=1e-3)
    assert math.isclose(metrics["logps/rejected"][-1], rejected.mean().item(), rel_tol=1e-4, abs_tol=1e-3)
    assert not torch.allclose(answer_only, every_completion)  # TRL's own mask would count the round-2 request
    assert metrics["rewards/chosen"][-1] == pytest.approx(0.0, abs=1e-4)  # the reference: the starting model


def _from_first_answer(mask):
    """What TRL's collator would count: every token from the first completion token to the end."""
    return (mask.cumsum(1) > 0).long() * (mask.flip(1).cumsum(1).flip(1) > 0).long()


# ------------------------------------------------------------------ (c) the command, end to end


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    from skillmix.training.cli import main

    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_the_tiny_dpo_recipe_trains_through_the_command(folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--config", str(TINY_DPO), "--data", str(folder), "--output-dir", str(out), "--max-steps", "3"]
    code, lines = run_main(args, capsys)
    assert code == 0, lines
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    record = json.loads((out / "skillmix_train.json").read_text())
    assert record["config"]["method"] == "dpo" and record["config"]["dpo"]["beta"] == 0.1
    assert record["record"]["extra"]["pairs_dropped"] == {
        "total": 4,
        "dropped": 0,
        "chosen": 0,
        "rejected": 0,
    }
    losses = json.loads((out / "train_losses.json").read_text())
    assert [step for step, _ in losses] == [1, 2, 3] and all(math.isfinite(loss) for _, loss in losses)
    card = (out / "README.md").read_text()
    assert "- dpo" in card and "DPO, beta 0.1, sigmoid loss, 4 pairs" in card and "4 preference pairs" in card
    assert any("4 preference pairs tokenized" in line for line in lines)


# ------------------------------------------------------------------ (d) the wrong method's data, refused


def test_data_of_the_other_method_is_one_error_line(folder, tmp_path, capsys):
    sft_only = write_folder(tmp_path / "sft", {"k1": [{"id": "k1-0", "k": 1}]})
    smoke = ROOT / "training" / "recipes" / "tiny" / "smoke.yaml"
    out = tmp_path / "never"
    cases = [
        (["--config", str(TINY_DPO), "--data", str(sft_only)], "no config 'preference' (it has k1)"),
        (["--config", str(smoke), "--data", str(folder), "--method", "dpo", "--no-packing"],
         "method dpo trains on preference pairs only; set configs: [preference] (not k1, k2, k3)"),
        (["--config", str(TINY_DPO), "--data", str(folder), "--method", "sft"],
         "the preference config holds pairs for method dpo, not sft"),
        (["--config", str(TINY_DPO), "--data", str(folder), "--packing"], "training.packing: method dpo"),
    ]  # fmt: skip
    for argv, message in cases:
        code, lines = run_main([*argv, "--output-dir", str(out)], capsys)
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("skillmix: error: ") and message in lines[0], lines
        assert not out.exists()


# ------------------------------------------------------------------ (e) pairs that keep their answers


def sized_row(i: int, skills: list[str], topic: str, chosen_long: bool, rejected_long: bool) -> dict:
    """A pair whose round-2 answers are short or long (60 more words) on each side."""
    row = pair_row(i, skills, topic)
    for side, long in (("chosen", chosen_long), ("rejected", rejected_long)):
        if long:
            answer = row[side][2]["content"]
            row[side][2] = {"role": "assistant", "content": answer + " And more." * 60}
    return row


def test_a_short_max_length_drops_exactly_the_pairs_that_lose_answer_tokens_counted_per_side():
    from skillmix.training.config import DatasetSource
    from skillmix.training.data import LoadedSource, pairs
    from skillmix.training.masking import SIDES, MaskError, tokenize_conversation, tokenize_pairs
    from skillmix.training.tiny import build_tokenizer

    shapes = [(False, False), (False, True), (True, False), (True, True)]  # (chosen long, rejected long)
    rows = [sized_row(i, r["skills"], r["topic"], *shapes[i]) for i, r in enumerate(training_rows(4))]
    source = LoadedSource(DatasetSource(path="x", configs=["preference"]), {}, {"preference": rows})
    triples = pairs([source])
    tokenizer = build_tokenizer([m["content"] for _, c, r in triples for m in c + r], 400, "chatml")

    def ids_of(messages):
        return tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)[
            "input_ids"
        ]

    def keeps(ids, messages, length):  # the oracle: the round-2 answer and its end-of-turn, decoded
        return squeeze(messages[-1]["content"] + END["chatml"]) in squeeze(tokenizer.decode(ids[:length]))

    def needed(messages):
        ids = ids_of(messages)
        return next(n for n in range(1, len(ids) + 1) if keeps(ids, messages, n))

    sides = {(p, side): m for p, *both in triples for side, m in zip(SIDES, both, strict=True)}
    shortest_long = min(needed(m) for (pid, side), m in sides.items() if len(m[-1]["content"]) > 400)
    limit = max(needed(m) for (pid, side), m in sides.items() if len(m[-1]["content"]) < 400)
    assert limit < shortest_long  # one max_length that keeps every short side, exactly at the boundary
    logged = []
    kept = tokenize_pairs(tokenizer, triples, limit, log=logged.append)
    expected_lost = {
        side: [pid for pid, *_ in triples if not keeps(ids_of(sides[pid, side]), sides[pid, side], limit)]
        for side in SIDES
    }
    assert (
        kept.lost
        == expected_lost
        == {"chosen": ["c2:g0>g1", "c3:g0>g1"], "rejected": ["c1:g0>g1", "c3:g0>g1"]}
    )
    assert [row["chosen_input_ids"] for row in kept.rows] == [ids_of(triples[0][1])[:limit]]
    assert logged == [
        "3 of 4 pairs dropped: a side would lose answer tokens (the round-2 answer or its end-of-turn "
        f"token) past max_length {limit} (chosen side: 2, rejected side: 2, both: 1); 1 pairs trained"
    ]
    boundary = next(m for m in sides.values() if len(m[-1]["content"]) < 400 and needed(m) == limit)
    assert tokenize_conversation(tokenizer, boundary, limit).answer_tokens_lost == 0
    assert tokenize_conversation(tokenizer, boundary, limit - 1).answer_tokens_lost == 1  # its end-of-turn
    with pytest.raises(MaskError, match=r"training.max_length 16: no pair keeps both sides' answers"):
        tokenize_pairs(tokenizer, triples, 16, log=logged.append)


# ------------------------------------------------------------------ (f) the reference: precomputed or bf16


def test_a_precomputed_reference_keeps_no_second_model_and_its_logps_reach_the_loss(folder, tmp_path):
    import torch

    from skillmix.training.config import build_config
    from skillmix.training.dpo import REFERENCE_LOGPS, PairCollator, make_trainer, prepare

    changes = {
        "output_dir": str(tmp_path / "o"),
        "dpo": {"reference": "precomputed"},
        "training": {"epochs": 2},
    }
    logs: list[str] = []
    prepared = prepare(build_config(TINY_DPO, changes, data_location=str(folder)), log=logs.append)
    assert prepared.ref_model is None
    assert (
        prepared.config.training.max_steps == 4 and "2 epoch(s) over 4 pairs in batches of 2: 4 steps" in logs
    )
    trainer = make_trainer(prepared, [])
    assert trainer.ref_model is None  # TRL keeps no second model
    assert set(REFERENCE_LOGPS) <= set(trainer.train_dataset.column_names)
    batch = PairCollator(prepared.tokenizer.pad_token_id)([trainer.train_dataset[i] for i in range(2)])
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        per_token = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])
        answer_only = (per_token[..., 0] * batch["completion_mask"][:, 1:]).sum(1)
        chosen, rejected = answer_only.chunk(2)
        assert torch.allclose(batch["ref_chosen_logps"], chosen, atol=1e-3)  # the starting model's sums
        assert torch.allclose(batch["ref_rejected_logps"], rejected, atol=1e-3)
        trainer.compute_loss(model.train(), batch)  # TRL disabled dropout: the same sums
    assert trainer._metrics["train"]["rewards/chosen"][-1] == pytest.approx(0.0, abs=1e-3)


def test_a_bf16_reference_is_a_frozen_bf16_copy(folder, tmp_path):
    import torch

    from skillmix.training.config import build_config
    from skillmix.training.dpo import PairCollator, make_trainer, prepare

    changes = {"output_dir": str(tmp_path / "o"), "dpo": {"reference": "bf16"}}
    prepared = prepare(build_config(TINY_DPO, changes, data_location=str(folder)), log=lambda m: None)
    assert prepared.ref_model.dtype == torch.bfloat16 and prepared.model.dtype == torch.float32
    assert not any(p.requires_grad for p in prepared.ref_model.parameters())
    trainer = make_trainer(prepared, [])
    loss = trainer.compute_loss(
        trainer.model, PairCollator(prepared.tokenizer.pad_token_id)(prepared.rows[:2])
    )
    assert torch.isfinite(loss)


def test_the_plan_counts_epochs_over_the_folders_pairs(folder, tmp_path, capsys):
    from skillmix.training.cli import main

    capsys.readouterr()
    argv = [
        "--config",
        str(TINY_DPO),
        "--data",
        str(folder),
        "--epochs",
        "3",
        "--plan",
        "--output-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (  # 4 pairs in batches of 2: 2 steps an epoch
        "steps: 6 = 3 epoch(s) over at most 4 pairs (before the pairs that lose answer tokens are dropped), "
        "at most max_steps 10"
    )


def test_epochs_size_dpo_only():
    from skillmix.config import ConfigError
    from skillmix.training.config import build_config

    with pytest.raises(ConfigError, match=r"training\.epochs sizes method dpo's passes over its pairs"):
        build_config(ROOT / "training" / "recipes" / "tiny" / "smoke.yaml", {"training": {"epochs": 1}})
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        build_config(TINY_DPO, {"training": {"epochs": 4}})  # 1-3 passes
