"""Several generations per combination, and the preference pairs made of them (``--generations``, the
``preference`` config), against the fake OpenAI server."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runs import dataset_cmd, run_cli
from datasets import load_dataset
from test_publish import REPO, TOKEN, load_remote, publish

from skillmix.dataset_folder.preference import preference_pairs, split_conversation
from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder


def rows_of(out: Path, config: str) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    if config not in manifest["configs"]:
        return []
    rows = pq.read_table(out / manifest["configs"][config]["path"]).to_pylist()
    cache = out.parent / f"hf-cache-{len(list(out.parent.glob('hf-cache-*')))}"  # a rewritten folder: fresh
    loaded = load_dataset(str(out), config, split="train", cache_dir=str(cache))
    assert loaded["id"] == [row["id"] for row in rows]
    return rows


def by_combination(rows: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for row in rows:
        head, _, g = row["id"].rpartition(":g")
        assert head and g.isdigit(), row["id"]
        groups[head].append(row)
    return groups


@pytest.mark.slow  # two builds and a release; the default suite is near its 20-minute budget
def test_generations_keep_one_text_per_combination_and_pair_the_rest(tmp_path, hub, monkeypatch):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=3, accept_rate=0.5)) as server:
        result = run_cli(dataset_cmd(server, out, "--k", "2", "--n", "6", "--generations", "3"))
        assert result.returncode == 0, result.stderr[-3000:]
        requests = server.count(path="/v1/chat/completions")
        kept, surplus = rows_of(out, "k2"), rows_of(out, "surplus")
        rejected, failed = rows_of(out, "rejected"), rows_of(out, "failed")
        every = kept + surplus + rejected + failed
        assert len(every) == 18 and len({r["id"] for r in every}) == 18
        assert sorted(by_combination(every)) and all(len(g) == 3 for g in by_combination(every).values())
        # the k config keeps the lowest generation's full-mark text of each combination; others are surplus
        full = by_combination(kept + surplus)
        assert sorted(r["id"] for r in kept) == sorted(
            min(g, key=lambda r: r["id"])["id"] for g in full.values()
        )
        assert len(kept) == len(full)
        # hand count: one pair per combination with a full-mark and a rejected text (widest margin)
        graded = by_combination(rejected)
        both = [c for c in full if c in graded]
        assert both, "the scripted judge gave no combination both outcomes: choose another seed"
        pairs = rows_of(out, "preference")
        assert len(pairs) == len(both) and {p["combination"] for p in pairs} == set(both)
        for pair in pairs:
            chosen = min(full[pair["combination"]], key=lambda r: r["id"])
            worst = min(graded[pair["combination"]], key=lambda r: (sum(r["points"]), r["id"]))
            assert (pair["chosen_id"], pair["rejected_id"]) == (chosen["id"], worst["id"])
            assert pair["margin"] == sum(chosen["points"]) - sum(worst["points"]) >= 1
            assert [m["role"] for m in pair["prompt"]] == ["user"]
            assert [m["role"] for m in pair["chosen"]] == ["assistant", "user", "assistant"]
            assert pair["chosen"] == split_conversation(chosen["conversation"])[1]
            assert pair["rejected"] == split_conversation(worst["conversation"])[1]
            assert chosen["answer"] in pair["chosen"][-1]["content"]
            assert pair["prompt"] == split_conversation(worst["conversation"])[0]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["counts"]["per_k"]["k2"]["combinations"] == 6
        assert manifest["counts"]["per_k"]["k2"]["combinations_kept"] == len(kept)
        folder_card = " ".join((out / "README.md").read_text().split())
        assert "`preference`" in folder_card and "a user turn inside `chosen` and `rejected`" in folder_card

        # the pairing rule changes the output only: the same folder, every pair, no new request
        again = run_cli(
            dataset_cmd(server, out, "--k", "2", "--n", "6", "--generations", "3", "--pairing", "all")
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert server.count(path="/v1/chat/completions") == requests
    every_pair = rows_of(out, "preference")
    assert len(every_pair) == sum(len(full[c]) * len(graded[c]) for c in both)
    assert {p["pairing"] for p in every_pair} == {"all"}

    # a release carries the config: `load_dataset(repo, "preference")` from the (loopback) Hub
    hub.configure_clients(monkeypatch, tmp_path / "hf_home")  # publish and load run in this process
    released = publish(hub, tmp_path, out, "v1.0.0")
    assert released.returncode == 0, released.stderr[-3000:]
    assert [pair_id for pair_id, _ in load_remote(hub, tmp_path, "preference", "v1.0.0")] == [
        p["id"] for p in every_pair
    ]
    # its card says what stock TRL would do with the user turn inside the completion, and what ours does
    from huggingface_hub import hf_hub_download

    card = hf_hub_download(REPO, "README.md", repo_type="dataset", revision="v1.0.0", token=TOKEN,
                           cache_dir=str(tmp_path / "card"))  # fmt: skip
    text = " ".join(Path(card).read_text().split())
    assert "conversational with a **user turn inside the completion**" in text
    assert "Stock TRL (`DPOTrainer` on this config as it is) counts every completion token" in text


def test_failed_rows_never_pair_and_one_generation_is_the_paper():
    base = {"k": 2, "setting": "train", "skills": ["a", "b"], "categories": [], "topic": "t"}
    talk = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]
    rows = [
        {**base, "id": "c:g0", "outcome": "failed", "points": None, "conversation": talk},
        {**base, "id": "c:g1", "outcome": "kept", "points": [1] * 5, "conversation": talk},
        {**base, "id": "d", "outcome": "kept", "points": [1] * 5, "conversation": talk},
    ]
    assert preference_pairs(rows) == []
    rows.append(
        {**base, "id": "c:g2", "outcome": "rejected", "points": [1, 0, 1, 1, 0], "conversation": talk}
    )
    (pair,) = preference_pairs(rows, "all")
    assert (pair["chosen_id"], pair["rejected_id"], pair["margin"]) == ("c:g1", "c:g2", 2)


def test_target_accepted_counts_combinations_with_a_kept_text():
    from skillmix.pipelines.config import DatasetConfig
    from skillmix.pipelines.output import RunResult

    config = DatasetConfig(k=[2], generations=2, target_accepted=2)
    outcomes = {"a:g0": "rejected", "a:g1": "kept", "b:g0": "kept", "b:g1": "kept", "c:g0": "kept"}
    outcomes.update({"c:g1": "failed", "d:g0": "kept", "d:g1": "rejected"})
    result = RunResult(config=config, models=(), split=None, drawn=list(outcomes))
    result.add([{"id": rid, "k": 2, "outcome": outcome} for rid, outcome in outcomes.items()])
    kept, surplus = result.split_kept(2)
    assert [r["id"] for r in kept] == ["a:g1", "b:g0"]  # the first two combinations with a full-mark text
    assert sorted(r["id"] for r in surplus) == ["b:g1", "c:g0", "d:g0"]  # beyond the target; b's second
    assert (result.kept(2), result.graded(2)) == (4, 4)  # combinations, not texts
    assert result.acceptance(2) == 5 / 7  # the share of graded texts with full marks
    assert result.shortfall(2) is None


def test_a_later_round_draws_the_next_combinations_whatever_the_generations(builtin):
    from skillmix.pipelines.config import DatasetConfig
    from skillmix.pipelines.run import Rounds
    from skillmix.sampling import sample_combinations

    config = DatasetConfig(k=[2], generations=3)
    rounds = Rounds(config, builtin)
    first, second = rounds._draw({2: 2}), rounds._draw({2: 2})
    assert len(first) == len(second) == 6  # 2 combinations x 3 generations
    split = builtin.split(config.split_seed)
    sequence = sample_combinations(builtin, 2, 4, setting="train", seed=config.seed, split=split)
    drawn = list(dict.fromkeys(row["combination"] for row in first + second))
    assert drawn == [combo.id for combo in sequence]  # combinations 3 and 4 next, none skipped
