from __future__ import annotations

import os
import subprocess
import sys

import pytest

from skillmix.catalog import Catalog, CatalogError


def test_builtin_split_sizes(builtin):
    split = builtin.split(0)
    assert len(split.training_skills) == 53 and len(split.heldout_skills) == 48
    assert len(split.training_topics) == 50 and len(split.heldout_topics) == 50
    assert {s.category for s in split.training_skills} == {"literary", "rhetorical"}
    assert not {s.category for s in split.heldout_skills} & {"literary", "rhetorical"}
    assert not set(split.training_topics) & set(split.heldout_topics)
    assert set(split.training_topics) | set(split.heldout_topics) == set(builtin.topics)


def test_split_is_deterministic_and_seeded(builtin):
    a, b, c = builtin.split(0), builtin.split(0), builtin.split(1)
    assert a == b and a.hash == b.hash
    assert a.training_topics != c.training_topics and a.hash != c.hash
    assert a.skills_hash == c.skills_hash  # skills are split by category, not by seed


def test_split_hash_is_the_same_in_another_process(builtin):
    code = "from skillmix.catalog import load_catalog; print(load_catalog().split(0).hash)"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == builtin.split(0).hash


def test_split_does_not_depend_on_catalog_order(tiny):
    shuffled = Catalog(tuple(reversed(tiny.skills)), tuple(reversed(tiny.topics)), source="r")
    assert shuffled.split(5).hash == tiny.split(5).hash
    assert shuffled.split(5).to_dict()["training_topics"] == tiny.split(5).to_dict()["training_topics"]


def test_split_needs_both_sides(tiny):
    only_literary = Catalog(tuple(s for s in tiny.skills if s.category == "literary"), tiny.topics)
    with pytest.raises(CatalogError, match="no held-out skills"):
        only_literary.split(0)
    with pytest.raises(CatalogError, match="unknown training category"):
        tiny.split(0, training_categories=("poetry",))


def test_to_dict_records_hashes(builtin):
    d = builtin.split(0).to_dict()
    assert d["hash"] == builtin.split(0).hash and len(d["hash"]) == 64
    assert d["catalog_hash"] == builtin.hash
