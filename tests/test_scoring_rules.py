"""One set of scoring rules, every path that scores: the same graded texts get the same points everywhere.

A handful of hand-made graded texts (k = 2: a clean one, one that names a skill, one the counter finds too
long, one whose length point the judge denied but the counter gives, a tie with an unparseable run, one a
lone parsed run decides, one no run could be parsed) go through the dataset's deciding step, the plain
metrics, the evaluation, the review's human decisions (each grader run read as one annotator), the GRPO
reward (from the judge's replies) and the release statistics, under each :class:`ScoringRules`: every path
must give the same decided points and metrics. Flipping any one rule must change some text's result (in
the paths it applies to), so a path that ignored its rules would fail here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import fields, replace

import numpy as np
import pytest

from skillmix.config import ConfigError, build
from skillmix.evaluation.config import EvalConfig
from skillmix.evaluation.score import combination_values, score_samples
from skillmix.llm.client import Completion
from skillmix.metrics import metric_values, score
from skillmix.pipelines.config import DatasetConfig, ProtocolConfig
from skillmix.pipelines.steps import decide_row
from skillmix.release.stats import dataset_stats, judge_vote
from skillmix.review.decide import Annotation, decide
from skillmix.review.records import question_names
from skillmix.rules import DEFAULT_RULES, UNPARSEABLE, ScoringRules
from skillmix.skills import Skill
from skillmix.training.method_settings import JudgeSettings
from skillmix.training.reward import Combination, grade_answer

K, TOPIC = 2, "Sewing"
SKILLS = (Skill("metaphor", "literary", "d", "e"), Skill("red herring", "rhetorical", "d", "e"))
NAMES = [s.name for s in SKILLS]
FULL, MISS_1ST, NO_LENGTH, BAD = [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 0], None
ONE = "The tailor's needle darted through the cloth while everyone argued about the price of thread."
TEXTS = {  # id: (answer, the judge's three runs; None = a reply that does not parse)
    "clean": (ONE, [FULL, FULL, MISS_1ST]),
    "named": ("Her seam was a metaphor for patience, though the talk soon turned to buttons.", [FULL] * 3),
    "long": ("The needle slipped. The seam held anyway.", [FULL] * 3),
    "short": ("A thimble guards the finger the way a shield guards a knight.", [NO_LENGTH] * 3),
    "tie": (ONE, [FULL, MISS_1ST, BAD]),
    "lone": (ONE, [FULL, BAD, BAD]),
    "silent": (ONE, [BAD, BAD, BAD]),
}
ALL_RULES = [
    ScoringRules(length_override=lo, name_penalty=npen, unparseable=un)
    for lo, npen, un in itertools.product((False, True), (False, True), UNPARSEABLE)
]
# Full marks by hand, for (length_override, name_penalty); "silent" has no decision under any rules.
FULL_MARKS = {
    (False, False): {"clean": 1, "named": 1, "long": 1, "short": 0, "tie": 0, "lone": 1},
    (True, False): {"clean": 1, "named": 1, "long": 0, "short": 1, "tie": 0, "lone": 1},
    (False, True): {"clean": 1, "named": 0, "long": 1, "short": 0, "tie": 0, "lone": 1},
    (True, True): {"clean": 1, "named": 0, "long": 0, "short": 1, "tie": 0, "lone": 1},
}
Decision = tuple[tuple[int, ...], tuple[float, float, float]] | None  # (points, metrics), None: none


def dataset_row(tid: str) -> dict:
    answer, runs = TEXTS[tid]
    return {
        "id": tid, "k": K, "skills": NAMES, "topic": TOPIC, "answer": answer,
        "round1_status": "ok", "round2_status": "ok",
        "grader_points": runs, "grader_status": ["unparseable" if r is None else "ok" for r in runs],
        "grader_errors": ["no table" if r is None else None for r in runs],
    }  # fmt: skip


def as_decision(points) -> Decision:
    if points is None:
        return None
    values = metric_values(np.array(points, dtype=float), K)
    return tuple(int(p) for p in points), tuple(float(v) for v in values)


def by_dataset(rules: ScoringRules) -> dict[str, Decision]:
    return {tid: as_decision(decide_row(dataset_row(tid), rules)["points"]) for tid in TEXTS}


def answers(run: list[int] | None) -> dict[str, str]:
    if run is None:
        return {}
    return {q: "yes" if p else "no" for q, p in zip(question_names(K), run, strict=True)}


def by_review(rules: ScoringRules) -> dict[str, Decision]:
    """Each grader run read as one annotator's answers (a reply that did not parse: nothing answered)."""
    out = {}
    for tid, (_answer, runs) in TEXTS.items():
        notes = [Annotation(f"run{i}", answers(r)) for i, r in enumerate(runs)]
        decided = decide(dataset_row(tid), notes, rules).decided
        out[tid] = as_decision(None if decided is None else decided.tolist())
    return out


def replies(runs: list) -> list[Completion]:
    def table(run: list[int]) -> str:
        rows = "\n".join(f"| item {i} | {p} |" for i, p in enumerate(run))
        return f"| Criteria | Points Earned |\n|---|---|\n{rows}\n| Total Points Earned | {sum(run)} |"

    return [Completion("I would rather not fill in a table." if r is None else table(r), "ok") for r in runs]


def by_reward(rules: ScoringRules) -> dict[str, Decision]:
    """The GRPO reward's decision, from the judge's replies as the reward receives them."""
    out = {}
    for tid, (answer, runs) in TEXTS.items():
        graded = grade_answer(Combination(tid, SKILLS, TOPIC), answer, replies(runs), rules)
        out[tid] = as_decision(graded.decided["points"])
        if out[tid] is None:  # no run parsed: the model's; the rules' unparseable says 0 or no reward
            assert graded.outcome == "unparseable"
            expected = 0.0 if rules.unparseable == "zero" else None
            assert {graded.reward(kind, rules.unparseable) for kind in ("full_marks", "mean")} == {expected}
            continue
        full, fraction = out[tid][1][0], out[tid][1][2]
        rewards = {
            kind: graded.reward(kind, rules.unparseable) for kind in ("full_marks", "skill_fraction", "mean")
        }
        assert rewards == {"full_marks": full, "skill_fraction": fraction, "mean": (full + fraction) / 2}
    return out


def by_metrics(rules: ScoringRules) -> dict[str, tuple | None]:
    """:func:`skillmix.metrics.score` on the runs (NaN for a run that did not parse): metrics only."""
    out = {}
    for tid, (answer, runs) in TEXTS.items():
        points = [[math.nan] * (K + 3) if r is None else r for r in runs]
        values = tuple(score(points, K, rules, answer, NAMES).values())
        out[tid] = None if math.isnan(values[0]) else values
    return out


def sample(tid: str) -> dict:
    return {**dataset_row(tid), "setting": "train", "combination": tid, "generation": 0}


def by_evaluation(rules: ScoringRules) -> dict[str, tuple | None]:
    """Each text its own combination (one generation): its metrics, None when left out."""
    ids, summary = combination_values([sample(tid) for tid in TEXTS], K, 3, 1, rules)
    found = dict(zip(ids, summary.per_combination.tolist(), strict=True))
    return {tid: None if math.isnan(found[tid][0]) else tuple(found[tid]) for tid in TEXTS}


@pytest.mark.parametrize("rules", ALL_RULES, ids=str)
def test_every_path_gives_the_same_points(rules):
    dataset = by_dataset(rules)
    assert by_review(rules) == dataset
    assert by_reward(rules) == dataset
    assert by_metrics(rules) == {tid: None if d is None else d[1] for tid, d in dataset.items()}
    expected = FULL_MARKS[(rules.length_override, rules.name_penalty)]
    assert {tid: d[1][0] for tid, d in dataset.items() if d is not None} == expected
    assert dataset["silent"] is None and decide_row(dataset_row("silent"), rules)["outcome"] == "failed"
    # the evaluation: a text with no decision scores 0 (zero) or is left out (drop)
    undecided = (0.0, 0.0, 0.0) if rules.unparseable == "zero" else None
    assert by_evaluation(rules) == {tid: undecided if d is None else d[1] for tid, d in dataset.items()}
    [result] = score_samples([sample(tid) for tid in TEXTS], 3, 1, rules)
    counted = [d[1][0] for d in dataset.values() if d is not None] + [0.0] * (undecided is not None)
    assert (result["n"], result["excluded"]) == (len(counted), len(TEXTS) - len(counted))
    assert result["full_marks"]["mean"] == pytest.approx(sum(counted) / len(counted))


@pytest.mark.parametrize("rules", ALL_RULES, ids=str)
def test_release_statistics_read_the_same_decisions(rules):
    rows = {tid: {**dataset_row(tid), **decide_row(dataset_row(tid), rules)} for tid in TEXTS}
    configs = {"k2": [], "rejected": [], "failed": []}
    for row in rows.values():
        configs["k2" if row["outcome"] == "kept" else row["outcome"]].append(row)
    stats = dataset_stats(configs)
    decided = {tid: d[0] for tid, d in by_review(rules).items() if d is not None}  # another path's points
    assert stats["per_k"]["k2"]["kept"] == sum(sum(p) == K + 3 for p in decided.values())
    assert stats["score_distribution"]["k2"] == {
        str(n): sum(sum(p) == n for p in decided.values()) for n in range(K + 4)
    }
    rates = stats["judge_pass_rates"]["k2"]
    assert rates["decided"]["length"] == np.mean([p[K + 2] for p in decided.values()])
    assert rates["decided"]["skills"] == np.mean([p[:K] for p in decided.values()])
    # the judge's own vote is the dataset's decision with no text check; the rules say what changed
    plain = replace(rules, length_override=False, name_penalty=False)
    votes = {tid: d[0] for tid, d in by_dataset(plain).items() if d is not None}
    assert {tid: tuple(judge_vote(rows[tid], K)) for tid in votes} == votes
    changed = sum(votes[tid][K + 2] != decided[tid][K + 2] for tid in decided)
    assert rates["length_override_changed"] == changed and rates["length"] == np.mean(
        [v[K + 2] for v in votes.values()]
    )


@pytest.mark.parametrize("rule", [f.name for f in fields(ScoringRules)])
def test_flipping_one_rule_changes_some_text(rule):
    paths = {"dataset": by_dataset, "review": by_review, "reward": by_reward, "metrics": by_metrics}
    paths["evaluation"] = by_evaluation
    for rules in ALL_RULES:
        value = getattr(rules, rule)
        other = UNPARSEABLE[1 - UNPARSEABLE.index(value)] if rule == "unparseable" else not value
        flipped = replace(rules, **{rule: other})
        for name, path in paths.items():
            differs = path(rules) != path(flipped)
            # unparseable is a rule of means over combinations: one text's decision does not depend on it
            assert differs == (rule != "unparseable" or name == "evaluation"), (name, rules, flipped)


def test_the_rules_come_from_one_place_and_from_what_a_folder_recorded():
    assert DatasetConfig().scoring_rules == EvalConfig().scoring_rules == DEFAULT_RULES
    assert DatasetConfig(name_penalty=False).scoring_rules == replace(DEFAULT_RULES, name_penalty=False)
    assert EvalConfig(unparseable="drop").scoring_rules == replace(DEFAULT_RULES, unparseable="drop")
    judge = JudgeSettings(length_override=False)  # the GRPO judge's, checked as a ProtocolConfig
    assert build(ProtocolConfig, judge.protocol(), "judge").scoring_rules == replace(
        DEFAULT_RULES, length_override=False
    )
    recorded = {"length_override": False, "name_penalty": True, "unparseable": "drop", "other": 1}
    assert ScoringRules.from_config(recorded) == ScoringRules(False, True, "drop")
    # before the unparseable rule was recorded, the only rule was zero
    assert ScoringRules.from_config({"length_override": True, "name_penalty": False}).unparseable == "zero"
    with pytest.raises(ConfigError, match="manifest records no name_penalty"):
        ScoringRules.from_config({"length_override": True}, "manifest")
    with pytest.raises(ConfigError, match=r"manifest: ScoringRules\.name_penalty must be a bool"):
        ScoringRules.from_config({"length_override": True, "name_penalty": "yes"}, "manifest")
    with pytest.raises(ValueError, match="unparseable must be one of"):
        ScoringRules(True, True, "ignore")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        DEFAULT_RULES.name_penalty = False  # type: ignore[misc]
