"""The findings of an experiment on fed results: each finding's contrast (D(1) -> D(1,2,3), not base ->
fine-tuned), its k and settings, every student checked, the verdict rule (interval and permutation p on
every check of the family; Holm for "not reproduced"), the floor case, and comparisons with no verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from skillmix.config import ConfigError
from skillmix.experiment.config import BASE, build_experiment
from skillmix.experiment.findings import check_verdict, comparisons, decide, family_verdict, holm
from skillmix.experiment.report import _findings_section
from skillmix.metrics import paired_bootstrap, paired_permutation_p

ROOT = Path(__file__).resolve().parents[1]
PAPER, METHODS = ROOT / "experiments" / "paper.yaml", ROOT / "experiments" / "methods.yaml"
ROWS = {"D1": 1000, "D12": 9000, "D123-8k": 8000, "D123": 20000}


def paired(low: float, high: float, p: float = 0.01, n: int = 100) -> dict:
    return {"n": n, "difference": (low + high) / 2, "ci_low": low, "ci_high": high, "p": p}


def measured(wins: int, losses: int, n: int = 100) -> dict:
    """The paired result of two runs whose per-combination Full Marks differ on ``wins`` + ``losses``."""
    a, b = np.zeros(n), np.zeros(n)
    b[:wins] = 1
    a[wins : wins + losses] = 1
    interval, test = paired_bootstrap(a, b), paired_permutation_p(a, b)
    return {"n": n, "difference": interval.difference, "ci_low": interval.ci_low, "ci_high": interval.ci_high,
            "p": test.p}  # fmt: skip


def test_the_floor_case_is_inconclusive_though_its_interval_excludes_0():
    floor = measured(4, 0)  # 4 wins, 0 losses of 100
    assert floor["ci_low"] > 0 and floor["p"] == pytest.approx(2 / 16)  # the exact sign-flip p: 0.125
    assert check_verdict(floor) == "unclear" and family_verdict([{"paired": floor}]) == "inconclusive"
    strong = measured(12, 0)
    assert strong["p"] < 0.05 and family_verdict([{"paired": strong}]) == "reproduced"


def test_holm_and_the_opposite_direction():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    supports = {"paired": paired(0.05, 0.2, p=0.04)}
    weakly_opposite = {"paired": paired(-0.2, -0.01, p=0.03)}  # the smallest p of 4 checks: Holm p = 0.12
    assert family_verdict([dict(supports) for _ in range(3)] + [weakly_opposite]) == "inconclusive"
    assert weakly_opposite["holm_p"] == pytest.approx(0.12) and weakly_opposite["verdict"] == "opposite"
    clearly_opposite = {"paired": paired(-0.2, -0.05, p=0.001)}
    assert family_verdict([dict(supports) for _ in range(3)] + [clearly_opposite]) == "not reproduced"
    assert family_verdict([supports, {"paired": None}]) == "not run"


def lookup_from(table: dict):
    """(a, b, setting, k) -> paired, for every student alike."""

    def lookup(student, a, b, setting, k, metric):
        assert metric == "full_marks"
        return table.get((a, b, setting, k))

    return lookup


def test_the_paper_findings_compare_d1_with_d123_for_every_student():
    config = build_experiment(PAPER)
    good = {("D1", "D123", s, k): paired(0.05, 0.2) for s in ("train", "all") for k in (4, 5)}
    good |= {("D1", "D123", "held-out", k): paired(0.05, 0.2) for k in (2, 3)}
    found = decide(config, lookup_from(good), ROWS)
    one = [f for f in found if f["finding"] == "1"]
    assert {f["student"] for f in one} == {"mistral-7b", "llama-2-13b"}  # both have D(1) and D(1,2,3)
    assert all(f["verdict"] == "reproduced" for f in one)
    checks = one[0]["checks"]
    assert [(c["a"], c["b"]) for c in checks] == [("D1", "D123")] * 4
    assert [(c["setting"], c["k"]) for c in checks] == [("train", 4), ("train", 5), ("all", 4), ("all", 5)]
    assert BASE not in {c["a"] for f in found for c in f["checks"]}  # base -> fine-tuned decides nothing
    assert [c["setting"] for c in one[0]["beside"]][-1] == "held-out"  # held-out k = 4, 5 beside
    two = [f for f in found if f["finding"] == "2"]
    assert all(f["verdict"] == "reproduced" for f in two)
    three = [f for f in found if f["finding"] == "3"]
    assert [f["student"] for f in three] == ["mistral-7b"] and three[0]["verdict"] == "not run"  # no data
    missing_one = {key: value for key, value in good.items() if key[2:] != ("all", 5)}
    assert decide(config, lookup_from(missing_one), ROWS)[0]["verdict"] == "not run"
    text = "\n".join(_findings_section(config, {"findings": found, "comparisons": []}))
    assert "**Finding 1** — mistral-7b" in text and "mistral-7b D(1,2,3) − D(1), all k = 5" in text


def test_finding_3_needs_as_many_rows_and_is_refused_for_a_method_comparison(tmp_path):
    config = build_experiment(PAPER)
    table = {("D12", "D123-8k", "held-out", k): paired(0.05, 0.2) for k in (3, 4, 5)}
    (three,) = [f for f in decide(config, lookup_from(table), ROWS) if f["finding"] == "3"]
    assert three["verdict"] == "reproduced"
    short = {**ROWS, "D12": 100}
    (three,) = [f for f in decide(config, lookup_from(table), short) if f["finding"] == "3"]
    assert three["verdict"] == "not run" and "fewer training rows" in three["reason"]
    data = yaml.safe_load(METHODS.read_text())
    family = [{"a": "SFT", "b": "DPO", "setting": ["held-out"], "k": [3]}]
    data["findings"] = [{"name": "3", "statement": "x", "data_efficiency": True, "family": family}]
    bad = tmp_path / "methods.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(
        ConfigError, match=r"findings 3: SFT \(sft\) and DPO \(dpo\) train by different methods"
    ):
        build_experiment(bad)


def test_a_method_comparison_is_no_finding():
    config = build_experiment(METHODS)
    table = {
        ("SFT", b, "held-out", k): paired(-0.1, 0.1, p=0.5) for b in ("DPO", "GRPO") for k in (2, 3, 4, 5)
    }
    assert decide(config, lookup_from(table), {}) == []
    reported = comparisons(config, lookup_from(table))
    assert [r["compared"] for r in reported] == [["SFT", "DPO"], ["SFT", "GRPO"]]
    assert all("verdict" not in c for r in reported for c in r["checks"])
    text = "\n".join(_findings_section(config, {"findings": [], "comparisons": reported}))
    assert "## Comparisons" in text
    assert "mistral-7b DPO from SFT, on pairs of D(2,3) − SFT on D(2,3), held-out k = 2" in text


def test_the_report_counts_failed_generations_per_model():
    from skillmix.experiment.report import failures

    config = build_experiment(METHODS)
    entry = {"generations": 6, "failed_generations": 1, "errored_generations": 2, "ungraded_generations": 0}
    runs = {("tiny", "SFT"): ({"results": [entry, {**entry, "failed_generations": 3}]}, [])}
    lines = failures(config, runs)
    assert "| student | training set | generations | failed generations |" in lines[3]
    assert lines[-1] == "| tiny | SFT on D(2,3) | 12 | 4 | 4 | 0 |"
