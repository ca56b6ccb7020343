"""Power before paying: the count-based simulation decides each check as the verdict rule does, and the
plan's minimum detectable differences say when an evaluation cannot detect the paper's effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skillmix.experiment.config import build_experiment
from skillmix.experiment.findings import check_verdict
from skillmix.experiment.power import _supports, detection_power, power_lines, sign_flip_p
from skillmix.metrics import paired_bootstrap, paired_permutation_p

PAPER = Path(__file__).resolve().parents[1] / "experiments" / "paper.yaml"


@pytest.mark.parametrize(
    ("wins", "losses", "n"), [(4, 0, 100), (12, 0, 100), (9, 2, 100), (20, 8, 300), (8, 8, 100), (2, 9, 50)]
)
def test_the_counts_decide_a_check_as_the_rule_does(wins, losses, n):
    a, b = np.zeros(n), np.zeros(n)
    b[:wins] = 1
    a[wins : wins + losses] = 1
    interval, test = paired_bootstrap(a, b), paired_permutation_p(a, b)
    paired = {"n": n, "difference": interval.difference, "ci_low": interval.ci_low,
              "ci_high": interval.ci_high, "p": test.p}  # fmt: skip
    assert _supports(wins, losses, n) == (check_verdict(paired) == "supports")
    if wins + losses <= 16:
        assert sign_flip_p(wins, losses) == pytest.approx(test.p)  # exactly what the rule enumerates


def test_a_small_effect_at_the_floor_needs_about_300_combinations():
    assert detection_power(100, 0.0, 0.03) < 0.3  # 0 -> 3 points: rarely detected at n = 100
    assert detection_power(300, 0.0, 0.03) > 0.8
    assert detection_power(300, 0.0, 0.06) >= detection_power(300, 0.0, 0.03)


def test_the_plan_warns_when_n_cannot_detect_the_papers_effect():
    config = build_experiment(PAPER)
    small = [line for line in power_lines(config, 50) if "llama-2-13b" in line and "train k=4" in line]
    assert len(small) == 1 and "the paper reports +0.08: WARNING: this n cannot detect it" in small[0]
    assert "D1 at 0.00, the base model's published rate; 30% of its passes lost, assumed" in small[0]
    large = [line for line in power_lines(config, 300) if "llama-2-13b" in line and "train k=4" in line]
    assert "detects 0.03 at 80% power" in large[0] and "WARNING" not in large[0]
