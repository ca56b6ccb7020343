"""From the annotators' answers to human decisions, and how far the judge and the humans agree.

**The human decision of a row.** Each annotator's answers are the row's k+3 rubric points (``yes`` = 1,
``no`` = 0, unanswered = NaN). They are combined by :func:`skillmix.metrics.majority_vote`, as the judge's
runs are: an item is earned when a strict majority of the annotators who answered it give it, and a tie
earns 0, so **with two annotators an item is earned only when both give it** (consensus). The protocol's
text checks then apply as they did to the judge (:func:`skillmix.metrics.apply_text_checks` under the
folder's :class:`skillmix.rules.ScoringRules`, read once from its manifest), and
:func:`skillmix.metrics.metric_values` says whether the row has full marks. A row with an applicable item
nobody answered has no decision.

**Agreement** (:mod:`skillmix.review.agreement`: raw agreement and Cohen's kappa, 95% intervals from a
bootstrap over records) is measured only on the **blind** records, whose annotators saw no answer of the
judge's; records pushed with the judge's answers pre-filled (``--show-judge``) are decided like the others
but counted apart (``shown``: how many, how many the humans changed). Every figure compares like with like:

* ``judge_human``, per question ``skill_1`` .. ``skill_K``, ``on_topic``, ``makes_sense``,
  ``within_length`` and the pooled ``skills``: the judge's own majority vote over its grader runs (before
  the sentence counter and the name rule, :func:`skillmix.release.stats.judge_vote`; a text no run could
  grade votes 0 everywhere, as a missing grade counts as zeros) against the humans' combined answers
  (before them too); ``full_marks``: the row's full marks against the humans' full marks, both after the
  text checks;
* ``counter_human``: the sentence counter's verdict (what the length point is when ``length_override`` is
  on) against the humans' "within length": the counter's agreement with people;
* ``human_human``: on blind rows with two annotators, the first against the second (by user name), each
  annotator's own answers, and full marks from each one's own answers after the text checks;
* ``judge_precision_kept``: of the blind reviewed rows the judge kept, the share the humans also give full
  marks (the combined decision above).

Each figure is given twice: ``unweighted``, the sample's own, and ``weighted`` back to the dataset's
composition: a record of stratum ``s`` (:func:`skillmix.review.sample.stratum`) counts ``N_s / n_s``, the
folder's graded rows of that stratum over the figure's records of it; ``coverage`` is the share of the
dataset's rows (to which the item applies) in strata with a record, the rows the weighted figure stands for.
Both intervals resample records (:mod:`skillmix.review.agreement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skillmix.metrics import apply_text_checks, length_point, majority_vote, metric_values
from skillmix.review.agreement import agreement, proportion, stratum_weights
from skillmix.review.records import LABELS, judge_raw, position, question_names
from skillmix.review.sample import Stratum, stratum
from skillmix.rules import ScoringRules

RULE = (
    "an item is earned when a strict majority of the annotators who answered it give it (a tie earns 0: "
    "with two annotators, both must give it); then the folder's text checks (sentence counter, name rule)"
)


@dataclass
class Annotation:
    """One annotator's submitted answers to one record: ``{question: "yes" | "no"}``."""

    user: str
    answers: dict[str, str] = field(default_factory=dict)
    comment: str | None = None

    def points(self, k: int) -> np.ndarray:
        """The k+3 rubric points of the answers; NaN for a question left unanswered."""
        values = {LABELS[0]: 1.0, LABELS[1]: 0.0}
        return np.array([values.get(self.answers.get(q, ""), np.nan) for q in question_names(k)])


@dataclass
class Decision:
    row: dict[str, Any]
    annotations: list[Annotation]
    human: np.ndarray  # the annotators' combined points (k+3), NaN where nobody answered
    decided: np.ndarray | None  # after the text checks; None when an item has no answer
    shown: bool = False  # the annotators saw the judge's answers pre-filled (not measured)

    @property
    def k(self) -> int:
        return int(self.row["k"])

    @property
    def full_marks(self) -> float | None:
        return None if self.decided is None else float(metric_values(self.decided, self.k)[0])


def checked(points: np.ndarray, row: Mapping[str, Any], rules: ScoringRules) -> np.ndarray | None:
    """``points`` after the text checks of ``rules`` (the folder's); None when an item is missing."""
    if np.isnan(points).any():
        return None
    return apply_text_checks(points, int(row["k"]), row.get("answer"), list(row["skills"]), rules)


def decide(
    row: Mapping[str, Any], annotations: Sequence[Annotation], rules: ScoringRules, shown: bool = False
) -> Decision:
    """The human decision of ``row`` from its annotations (at least one; see the module docstring)."""
    k = int(row["k"])
    annotations = sorted(annotations, key=lambda a: a.user)
    human = majority_vote(np.stack([a.points(k) for a in annotations]))
    return Decision(dict(row), list(annotations), human, checked(human, row, rules), shown)


def _own_full_marks(annotation: Annotation, row: Mapping[str, Any], rules: ScoringRules) -> float:
    decided = checked(annotation.points(int(row["k"])), row, rules)
    return np.nan if decided is None else float(metric_values(decided, int(row["k"]))[0])


def _items(max_k: int) -> list[str]:
    return [*question_names(max_k)[:max_k], "skills", *question_names(max_k)[max_k:], "full_marks"]


def _indexes(item: str, k: int) -> list[int | None]:
    """The rubric positions of ``item`` in a row with ``k`` skills (``None``: the row's full marks)."""
    if item == "full_marks":
        return [None]
    if item == "skills":
        return list(range(k))
    return [] if position(item, k) is None else [position(item, k)]


def _applies(item: str, k: int) -> bool:
    return bool(_indexes(item, k))


Value = Any  # (decision, rubric index or None for full marks) -> 0.0, 1.0 or NaN


def _figure(
    decisions: Sequence[Decision],
    item: str,
    value_a: Value,
    value_b: Value,
    population: Mapping[Stratum, int],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """One figure, unweighted and weighted (module docstring), over the pairs both sides rated."""
    a, b, ids, strata = [], [], [], {}
    for d in decisions:
        for index in _indexes(item, d.k):
            x, y = value_a(d, index), value_b(d, index)
            if np.isnan(x) or np.isnan(y):
                continue
            a.append(x)
            b.append(y)
            ids.append(str(d.row["id"]))
            strata[str(d.row["id"])] = stratum(d.row)
    applicable = {s: rows for s, rows in population.items() if _applies(item, s[0])}
    weights, coverage = stratum_weights(strata, applicable)
    plain = agreement(a, b, records=ids, n_boot=n_boot, seed=seed)
    weighted = agreement(a, b, records=ids, weights=weights, n_boot=n_boot, seed=seed)
    keys = ("raw", "raw_ci", "kappa", "kappa_ci")
    return {
        "n": plain["n"],
        "records": plain["records"],
        "unweighted": {key: plain[key] for key in keys},
        "weighted": {**{key: weighted[key] for key in keys}, "coverage": coverage},
    }


def _precision(
    decisions: Sequence[Decision], population: Mapping[Stratum, int], n_boot: int, seed: int
) -> dict[str, Any]:
    """The judge's precision on the kept rows, unweighted and weighted back to the kept rows."""
    kept = [d for d in decisions if d.row["outcome"] == "kept" and d.full_marks is not None]
    strata = {str(d.row["id"]): stratum(d.row) for d in kept}
    weights, coverage = stratum_weights(strata, {s: n for s, n in population.items() if s[1] == "kept"})
    values = [d.full_marks for d in kept]
    plain = proportion(values, n_boot=n_boot, seed=seed)
    weighted = proportion(
        values,
        weights=[weights[str(d.row["id"])] for d in kept],
        n_boot=n_boot,
        seed=seed,
    )
    return {
        "n": plain["n"],
        "unweighted": {"share": plain["share"], "ci": plain["ci"]},
        "weighted": {"share": weighted["share"], "ci": weighted["ci"], "coverage": coverage},
    }


def figures(
    decisions: Sequence[Decision],
    rules: ScoringRules,
    population: Mapping[Stratum, int],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The agreement figures of the module docstring (JSON-ready) over the blind decided rows;
    ``population`` is ``{stratum: rows}`` of the folder's graded rows."""
    blind = [d for d in decisions if not d.shown and d.decided is not None]
    max_k = max((d.k for d in blind), default=1)
    votes = {str(d.row["id"]): judge_raw(d.row) for d in blind}

    def judge(d: Decision, i: int | None) -> float:
        return float(d.row["full_marks"]) if i is None else float(votes[str(d.row["id"])][i])

    def humans(d: Decision, i: int | None) -> float:
        return (np.nan if d.full_marks is None else d.full_marks) if i is None else float(d.human[i])

    def counter(d: Decision, i: int | None) -> float:
        return length_point(d.row.get("answer"), d.k)

    def rater(n: int) -> Value:
        def value(d: Decision, i: int | None) -> float:
            note = d.annotations[n]
            return _own_full_marks(note, d.row, rules) if i is None else float(note.points(d.k)[i])

        return value

    double = [d for d in blind if len(d.annotations) >= 2]

    def table(rows: Sequence[Decision], a: Value, b: Value, items: Sequence[str]) -> dict[str, Any]:
        return {item: _figure(rows, item, a, b, population, n_boot, seed) for item in items}

    return {
        "records": len(blind),
        "judge_human": table(blind, judge, humans, _items(max_k)),
        "counter_human": table(blind, counter, humans, ["within_length"]),
        "human_human": table(double, rater(0), rater(1), _items(max_k)),
        "judge_precision_kept": _precision(blind, population, n_boot, seed),
    }
