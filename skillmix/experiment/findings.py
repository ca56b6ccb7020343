"""The findings of an experiment: which comparison decides each, by which rule, with which error rates.

A **contrast** is a paired comparison of two training sets of one student (``b`` minus ``a``, per
combination both evaluations answered: :func:`skillmix.evaluation.pairing` gives the paired bootstrap 95%
interval and the two-sided sign-flip permutation p, exact up to 16 nonzero differences) on some settings,
k and one metric. A **finding** is a statement of the paper with one **family** of contrasts that decides
its verdict and others reported **beside** it; a **comparison** (SFT vs DPO, say) is reported as
differences, with no finding's wording and no verdict.

The paper's findings (arXiv 2409.19808) are the default, :data:`PAPER`: each asks what adding the
compositional data adds, so it compares D(1) with D(1,2,3) (D(1) already shows every held-out skill alone,
and any fine-tuning teaches the answer format: base -> fine-tuned is the paper's headline figure, reported
beside the paper, not a verdict).

**The verdict rule** (:func:`family_verdict`), on the family's checks:

* *reproduced* when every check has a paired 95% interval that excludes 0 in the finding's direction and a
  permutation p below 0.05: each check is then a test at level 0.05 and all of them must pass (an
  intersection-union test: the family's error rate is at most 0.05, with no correction needed);
* *not reproduced* when some check goes the opposite way with a Holm-corrected p below 0.05 over the family
  (the family-wise error rate of that claim is at most 0.05);
* *inconclusive* otherwise, *not run* when a check has no result (the reason is given).

The interval alone is not enough at the floor: 4 wins and 0 losses of 100 combinations give the percentile
interval [0.01, 0.08], while the exact sign-flip p is 2/16 = 0.125; such a check is inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ALPHA = 0.05
_STRICT = ConfigDict(extra="forbid")
RULE = (
    "reproduced when every check of the finding's family has a paired 95% interval excluding 0 in the "
    f"finding's direction and a sign-flip permutation p < {ALPHA}; not reproduced when a check of the "
    f"family goes the other way with a Holm-corrected p < {ALPHA}; inconclusive otherwise"
)
Lookup = Callable[[str, str, str, str, int, str], dict[str, Any] | None]  # student, a, b, setting, k, metric


class Contrast(BaseModel):
    """``b`` minus ``a`` (training-set names, or ``base``) on ``setting`` x ``k`` for ``metric``."""

    model_config = _STRICT

    a: str
    b: str
    setting: list[str] = Field(min_length=1)
    k: list[int] = Field(min_length=1)
    metric: str = "full_marks"

    def checks(self) -> list[tuple[str, int]]:
        return [(setting, k) for setting in self.setting for k in self.k]


class Finding(BaseModel):
    model_config = _STRICT

    name: str
    statement: str
    family: list[Contrast] = Field(min_length=1, description="the contrasts that decide the verdict")
    beside: list[Contrast] = Field(default_factory=list, description="reported beside, no verdict")
    data_efficiency: bool = Field(
        False, description="b is the skill-richer set with no more rows than a (finding 3's conditions)"
    )


def _contrast(a: str, b: str, settings: Sequence[str], ks: Sequence[int]) -> dict[str, Any]:
    return {"a": a, "b": b, "setting": list(settings), "k": list(ks)}


PAPER: list[dict[str, Any]] = [
    {
        "name": "1",
        "statement": "training on k = 2, 3 texts improves k = 4, 5: D(1) -> D(1,2,3)",
        "family": [_contrast("D1", "D123", ["train", "all"], [4, 5])],
        "beside": [
            _contrast("D1", "D12", ["train", "all"], [4, 5]),
            _contrast("D1", "D123", ["held-out"], [4, 5]),
        ],
    },
    {
        "name": "2",
        "statement": "training-skill compositions improve held-out-skill compositions: D(1) -> D(1,2,3)",
        "family": [_contrast("D1", "D123", ["held-out"], [2, 3])],
        "beside": [_contrast("D1", "D123", ["held-out"], [4, 5])],
    },
    {
        "name": "3",
        "statement": "skill-richer data is more data-efficient: the skill-richer smaller set vs D(1,2) of at "
        "least as many rows",
        "family": [_contrast("D12", "D123-8k", ["held-out"], [3, 4, 5])],
        "data_efficiency": True,
    },
]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the input's order): the family-wise error rate of the
    hypotheses whose adjusted p is below alpha is at most alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def check_verdict(paired: dict[str, Any] | None, direction: int = 1) -> str:
    """One check alone: ``supports`` (interval excludes 0 in ``direction`` and p < alpha), ``opposite``
    (the difference goes the other way; whether it counts is the family's Holm step), ``unclear``, or
    ``not run``."""
    if not paired or not paired.get("n") or paired.get("difference") is None or paired.get("p") is None:
        return "not run"
    low = min(direction * paired["ci_low"], direction * paired["ci_high"])
    if low > 0 and paired["p"] < ALPHA:
        return "supports"
    if direction * paired["difference"] < 0:
        return "opposite"
    return "unclear"


def family_verdict(checks: list[dict[str, Any]], direction: int = 1) -> str:
    """The rule of the module docstring; each check gets ``holm_p`` (its Holm-adjusted p) and ``verdict``."""
    for check in checks:
        check["verdict"] = check_verdict(check.get("paired"), direction)
    if any(c["verdict"] == "not run" for c in checks):
        return "not run"
    adjusted = holm([c["paired"]["p"] for c in checks])
    for check, p in zip(checks, adjusted, strict=True):
        check["holm_p"] = p
    if all(c["verdict"] == "supports" for c in checks):
        return "reproduced"
    if any(c["verdict"] == "opposite" and c["holm_p"] < ALPHA for c in checks):
        return "not reproduced"
    return "inconclusive"


def max_k(configs: Sequence[str]) -> int | None:
    """The largest k of a training set's dataset configs (``k3`` -> 3); None when one is not a kN config."""
    ks = [int(name[1:]) for name in configs if name[:1] == "k" and name[1:].isdigit()]
    return max(ks) if len(ks) == len(configs) else None


def efficiency_problem(config: Any, contrast: Contrast) -> str | None:
    """Why ``contrast`` cannot test data efficiency (finding 3): the two sets must train by the same method
    and the skill-richer ``b`` must reach a higher k than ``a``. None when it can."""
    a, b = config.training_sets[contrast.a], config.training_sets[contrast.b]
    if (a.method or "sft") != (b.method or "sft"):
        return (
            f"{contrast.a} ({a.method or 'sft'}) and {contrast.b} ({b.method or 'sft'}) train by different "
            "methods: a method comparison belongs in `comparisons:`, not in a finding on data"
        )
    ka, kb = max_k(a.configs), max_k(b.configs)
    if ka is None or kb is None or kb <= ka:
        return (
            f"{contrast.b} must reach a higher k than {contrast.a} (max k {kb} vs {ka}): it is not "
            "skill-richer"
        )
    return None


def decide(config: Any, lookup: Lookup, rows: dict[str, int]) -> list[dict[str, Any]]:
    """Every finding for every student that has its sets (one entry per finding when none has them)."""
    out = []
    for finding in config.finding_list():
        students = [s for s in config.students if _has(config, s, finding.family)]
        if not students:
            out.append(_entry(finding, None, [], "not run", _why_not(config, finding)))
            continue
        for student in students:
            reason = _rows_problem(config, finding, rows) if finding.data_efficiency else None
            family = _checks(finding.family, student, lookup, None if reason is None else False)
            beside = _checks(finding.beside, student, lookup, _has(config, student, finding.beside))
            result = "not run" if reason else family_verdict(family)
            for check in beside:
                check["verdict"] = check_verdict(check["paired"])
            if result == "not run" and reason is None:
                reason = "a check of the family has no result (the evaluation lacks its setting or k)"
            out.append(_entry(finding, student, family, result, reason, beside))
    return out


def comparisons(config: Any, lookup: Lookup) -> list[dict[str, Any]]:
    """The declared comparisons of every student that has both sets: differences only, no verdict."""
    return [
        {
            "student": student,
            "compared": [contrast.a, contrast.b],
            "checks": _checks([contrast], student, lookup),
        }
        for contrast in config.comparisons
        for student in config.students
        if _has(config, student, [contrast])
    ]


def _has(config: Any, student: str, contrasts: Sequence[Contrast]) -> bool:
    sets = config.sets_of(student)
    return all(name in sets for c in contrasts for name in (c.a, c.b))


def _why_not(config: Any, finding: Finding) -> str:
    names = sorted({n for c in finding.family for n in (c.a, c.b)})
    missing = [n for n in names if n not in config.training_sets and n != "base"]
    if missing:
        return f"the experiment has no training set {', '.join(missing)}"
    return f"no student is trained on all of {', '.join(names)}"


def _rows_problem(config: Any, finding: Finding, rows: dict[str, int]) -> str | None:
    for contrast in finding.family:
        if rows.get(contrast.a, 0) < rows.get(contrast.b, 0):
            poorer = f"{config.label(contrast.a)} ({rows.get(contrast.a, 0)} rows)"
            richer = f"{config.label(contrast.b)} ({rows.get(contrast.b, 0)})"
            return f"{poorer} has fewer training rows than {richer}: not a test of data efficiency"
    return None


def _checks(contrasts: Sequence[Contrast], student: str, lookup: Lookup, run: bool | None = None) -> list:
    return [
        {
            "a": c.a,
            "b": c.b,
            "setting": setting,
            "k": k,
            "metric": c.metric,
            "paired": None if run is False else lookup(student, c.a, c.b, setting, k, c.metric),
        }
        for c in contrasts
        for setting, k in c.checks()
    ]


def _entry(
    finding: Finding, student: str | None, family: list, verdict: str, reason: str | None, beside: list = ()
) -> dict[str, Any]:
    return {
        "finding": finding.name,
        "statement": finding.statement,
        "student": student,
        "verdict": verdict,
        "reason": reason,
        "checks": family,
        "beside": list(beside),
        "rule": RULE,
    }
