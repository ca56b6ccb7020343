from __future__ import annotations

import math
from collections import Counter

import pytest

from skillmix.sampling import SamplingError, combination_key, count_combinations, sample_combinations


def assert_valid(draw, skills, topics, k):
    keys = [c.key for c in draw]
    assert len(set(keys)) == len(keys), "a combination repeats"
    for combo in draw:
        assert combo.k == k and len({s.name for s in combo.skills}) == k
        assert {s.name for s in combo.skills} <= skills
        assert combo.topic in topics


@pytest.mark.parametrize("k", [2, 3, 5])
def test_train_setting_is_balanced_and_distinct(builtin, k):
    split = builtin.split(0)
    draw = sample_combinations(builtin, k, 200, setting="train", seed=7)
    assert len(draw) == 200
    assert_valid(draw, {s.name for s in split.training_skills}, set(split.training_topics), k)
    usage = draw.skill_usage
    assert set(usage) == {s.name for s in split.training_skills}
    assert max(usage.values()) - min(usage.values()) <= 1
    expected = 200 * k / 53
    assert draw.usage_ratio == max(usage.values()) / min(usage.values())
    assert math.floor(expected) <= min(usage.values()) <= max(usage.values()) <= math.ceil(expected)
    topics = draw.topic_usage.values()
    assert max(topics) - min(topics) <= 1


def test_held_out_and_all_settings(builtin):
    split = builtin.split(0)
    held = sample_combinations(builtin, 3, 100, setting="held-out", seed=1)
    assert_valid(held, {s.name for s in split.heldout_skills}, set(split.heldout_topics), 3)
    every = sample_combinations(builtin, 4, 100, setting="all", seed=1)
    assert_valid(every, {s.name for s in builtin.skills}, set(builtin.topics), 4)


def test_k1_covers_all_skills_with_training_topics(builtin):
    split = builtin.split(0)
    draw = sample_combinations(builtin, 1, None, setting="k1")
    assert len(draw) == 101 * 50
    assert_valid(draw, {s.name for s in builtin.skills}, set(split.training_topics), 1)
    assert set(draw.skill_usage.values()) == {50} and draw.usage_ratio == 1.0


def test_seeded_and_deterministic(builtin):
    a = sample_combinations(builtin, 3, 50, seed=0)
    b = sample_combinations(builtin, 3, 50, seed=0)
    c = sample_combinations(builtin, 3, 50, seed=1)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert [x.id for x in a] != [x.id for x in c]
    assert a.split_hash == builtin.split(0).hash


def first_place_shares(draw) -> dict[str, float]:
    """For each skill seen at least 10 times: the share of its combinations that list it first."""
    seen, first = Counter(), Counter()
    for combo in draw:
        seen.update(s.name for s in combo.skills)
        first[combo.skills[0].name] += 1
    return {name: first[name] / count for name, count in seen.items() if count >= 10}


@pytest.mark.parametrize(("k", "n", "setting"), [(3, 300, "train"), (2, None, "held-out")])
def test_skill_order_is_shuffled_but_id_is_order_free(builtin, k, n, setting):
    # the greedy draw (n=300) and the exhaustive one (n=None) both order skills by index when unshuffled:
    # then some skills would always come first and others never
    draw = sample_combinations(builtin, k, n, setting=setting, seed=3)
    shares = first_place_shares(draw)
    assert len(shares) > 40
    assert max(shares.values()) < 0.8 and min(shares.values()) > 0.05
    sorted_count = sum([s.name for s in c.skills] == sorted(s.name for s in c.skills) for c in draw)
    assert sorted_count < 0.7 * len(draw)  # 1/k! of the combinations are in sorted order by chance
    combo = draw[0]
    reordered = type(combo)(tuple(reversed(combo.skills)), combo.topic, combo.setting)
    assert reordered.id == combo.id and reordered.key == combo.key
    # one key whoever holds the combination: Skill records, a row's names, records with a name
    names = [sk.name for sk in combo.skills]
    assert combination_key(reversed(names), combo.topic) == combo.key
    assert combination_key([{"name": n} for n in names], combo.topic) == combo.key
    assert combination_key([n.upper() for n in names], combo.topic) != combo.key  # names as written


def test_dense_request_still_distinct(tiny):
    split = tiny.split(0)  # 3 training skills, 2 training topics -> 3 * 2 = 6 pairs for k=2
    total = count_combinations(3, 2, 2)
    draw = sample_combinations(tiny, 2, total - 1, setting="train", split=split)
    assert len({c.key for c in draw}) == total - 1
    full = sample_combinations(tiny, 2, None, setting="train", split=split)
    assert len({c.key for c in full}) == total


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0, "n": 5}, "k must be an integer >= 1"),
        (
            {"k": 49, "n": 5, "setting": "held-out"},
            "k=49 exceeds the 48 skills eligible in setting 'held-out'",
        ),
        ({"k": 54, "n": 5, "setting": "train"}, "k=54 exceeds the 53 skills"),
        ({"k": 2, "n": 5, "setting": "k1"}, "setting 'k1' is for k=1"),
        ({"k": 2, "n": 5, "setting": "test"}, "unknown setting 'test'"),
        ({"k": 2, "n": -1}, "n must be a non-negative integer"),
        ({"k": 3, "n": None}, "pass n"),
    ],
)
def test_bad_requests(builtin, kwargs, message):
    with pytest.raises(SamplingError, match=message):
        sample_combinations(builtin, **kwargs)


def test_more_than_exists(tiny):
    with pytest.raises(SamplingError, match="n=7 exceeds the 6 distinct combinations"):
        sample_combinations(tiny, 2, 7, setting="train")
