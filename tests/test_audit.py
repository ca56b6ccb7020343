from __future__ import annotations

import pytest

from skillmix.release.audit import audit, ngrams
from skillmix.release.evalsets import build_eval_sets


@pytest.fixture(scope="module")
def split(builtin):
    return builtin.split(0)


@pytest.fixture(scope="module")
def eval_rows(builtin, split):
    sets = build_eval_sets(builtin, split, n=20)
    return [row for rows in sets.values() for row in rows]


def train_row(i, skills, topic, answer="A plain sentence about the craft.", k=None):
    return {"id": f"t{i}", "k": k or len(skills), "skills": skills, "topic": topic, "answer": answer}


def test_eval_sets_shape(builtin, split):
    sets = build_eval_sets(builtin, split, n=10)
    assert set(sets) == {"eval-train", "eval-held-out", "eval-all"}
    held = sets["eval-held-out"]
    assert sorted({r["k"] for r in held}) == [2, 3, 4, 5] and len(held) == 40
    heldout_skills = {s.name for s in split.heldout_skills}
    assert all(set(r["skills"]) <= heldout_skills and r["topic"] in split.heldout_topics for r in held)
    assert all(r["prompt"] and r["round2_prompt"] and "answer" not in r for r in held)
    assert build_eval_sets(builtin, split, n=10) == sets  # deterministic


def test_clean_training_data_passes(split, eval_rows):
    train_skills = [s.name for s in split.training_skills]
    topic = split.training_topics[0]
    rows = [train_row(0, train_skills[:2], topic), train_row(1, train_skills[2:5], topic),
            train_row(2, [split.heldout_skills[0].name], topic)]  # fmt: skip  # held-out skill alone: fine
    report = audit(rows, eval_rows, split)
    assert report.passed and report.failures() == ""
    assert report.training_rows == 3 and report.evaluation_prompts == len(eval_rows)
    assert report.to_dict()["passed"] is True


def test_each_leak_is_named(split, eval_rows):
    train = [s.name for s in split.training_skills]
    held = [s.name for s in split.heldout_skills]
    held_combo = next(r for r in eval_rows if r["setting"] == "held-out")
    rows = [
        train_row(0, [train[0], held[0]], split.training_topics[0]),  # composes a held-out skill
        train_row(1, [train[1]], split.heldout_topics[0]),  # held-out topic
        train_row(2, list(reversed(held_combo["skills"])), held_combo["topic"]),  # an eval combination
        train_row(3, train[2:4], split.training_topics[1], answer=f"It was plain {held[1]} at work."),
    ]
    report = audit(rows, eval_rows, split)
    assert not report.passed
    failed = {c.name: c.violations for c in report.checks if not c.passed}
    assert failed["heldout_skill_in_composition"][0].startswith("t0 (") and held[0] in failed[
        "heldout_skill_in_composition"][0]  # fmt: skip
    # t2 (an evaluation combination) is on a held-out topic with held-out skills: it fails those checks too
    assert failed["heldout_topic_in_training"] == [
        f"t1 ({split.heldout_topics[0]})",
        f"t2 ({held_combo['topic']})",
    ]
    assert [v.split()[0] for v in failed["heldout_skill_in_composition"]] == ["t0", "t2"]
    assert failed["heldout_combination_in_training"] == [f"t2 (= {held_combo['id']})"]
    assert any(v.startswith("t3 (") for v in failed["heldout_skill_named"])
    assert "heldout_topic_in_training: 2 row(s): t1" in report.failures()


def test_near_duplicates_are_counted_not_failed(split, eval_rows):
    prompt_words = eval_rows[0]["prompt"].split()
    copied = " ".join(prompt_words[10:22])
    rows = [train_row(0, [split.training_skills[0].name, split.training_skills[1].name],
                      split.training_topics[0], answer=copied)]  # fmt: skip
    report = audit(rows, eval_rows, split)
    assert report.passed and report.near_duplicates == 1
    assert report.near_duplicate_examples[0]["training_id"] == "t0"
    assert ngrams("One two three", 2) == {("one", "two"), ("two", "three")} and ngrams(None, 3) == set()
