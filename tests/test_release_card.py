from __future__ import annotations

import pytest

from skillmix.release.card import changelog
from skillmix.release.versions import VersionError, parse_version, previous_release


def test_semver():
    assert parse_version("v1.2.3")[:3] == (1, 2, 3)
    assert parse_version("v1.0.0-rc.1") < parse_version("v1.0.0")
    for bad in ("1.0.0", "v1.0", "v01.0.0", "latest", "v1.0.0+build"):
        with pytest.raises(VersionError, match="not semantic versioning"):
            parse_version(bad)


def test_previous_release_ignores_other_tags():
    tags = {"v1.0.0": "a", "v1.1.0": "b", "v2.0.0-rc.1": "c", "nightly": "d", "v0.9.9": "e"}
    assert previous_release(tags, "v1.2.0") == "v1.1.0"
    assert previous_release(tags, "v2.0.0") == "v2.0.0-rc.1"
    assert previous_release(tags, "v1.0.0") == "v0.9.9"
    assert previous_release(tags, "v0.1.0") is None


def manifest(judge="gpt-4o", grader_hash="aaa", split="s1"):
    return {
        "models": {"teacher": {"model": "gpt-4o"}, "judge": {"model": judge}},
        "prompt_hashes": {"generation_round1": "r1", "grader_table": grader_hash},
        "split": {"hash": split},
    }


def test_changelog_counts_rows_and_shifts():
    old_stats = {"per_k": {"k2": {"acceptance_rate": 0.5}}, "score_distribution": {"k2": {"5": 1, "4": 1}}}
    previous = {**manifest(), "release": {"version": "v1.0.0", "stats": old_stats}}
    configs = {"k2": [{"id": "a"}, {"id": "c"}], "rejected": [{"id": "x"}]}
    stats = {"per_k": {"k2": {"acceptance_rate": 2 / 3}}, "score_distribution": {"k2": {"5": 2, "3": 1}}}
    log = changelog(
        previous, {"k2": {"a", "b"}, "all": {"a", "b"}}, manifest("claude", "bbb"), stats, configs
    )
    assert log["previous_version"] == "v1.0.0" and not log["first_release"]
    assert log["rows"]["k2"] == {"added": 1, "removed": 1, "total": 2}
    assert log["rows"]["all"] == {"added": 1, "removed": 1, "total": 2}
    assert log["rows"]["rejected"] == {"added": 1, "removed": 0, "total": 1}
    shift = log["per_k"]["k2"]
    assert shift["acceptance_before"] == 0.5 and shift["acceptance_after"] == pytest.approx(2 / 3)
    assert shift["mean_score_before"] == pytest.approx(9 / 2 / 5)  # (5 + 4) / 2 rows / 5 points
    assert shift["mean_score_after"] == pytest.approx(13 / 3 / 5)
    assert log["models_changed"] == {"judge": {"before": "gpt-4o", "after": "claude"}}
    assert log["prompts_changed"] == ["grader_table"] and log["split_changed"] is False
    assert changelog(None, {}, manifest(), stats, configs) == {"first_release": True}


def test_hub_metadata_sizes_and_splits():
    from skillmix.cards.render import hub_metadata

    meta = hub_metadata({"k3": {"path": "k3/a.parquet", "rows": 150_000}, "all": {"path": "all/a.parquet",
                         "rows": 150_000, "split": "train"}}, ["skill-mix"])  # fmt: skip
    assert meta["size_categories"] == ["100K<n<1M"]  # "all" repeats the per-k rows and is not counted
    first = {"config_name": "k3", "data_files": [{"split": "train", "path": "k3/a.parquet"}]}
    assert meta["configs"][0] == first
    assert hub_metadata({"k1": {"path": "p", "rows": 10}}, [])["size_categories"] == ["n<1K"]
