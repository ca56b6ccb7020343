"""From the annotators' answers to human decisions, and how far the judge and the humans agree.

**The human decision of a row.** Each annotator's answers are the row's k+3 rubric points (``yes`` = 1,
``no`` = 0, unanswered = NaN). They are combined by :func:`skillmix.metrics.majority_vote`, as the judge's
runs are: an item is earned when a strict majority of the annotators who answered it give it, and a tie
earns 0, so **with two annotators an item is earned only when both give it** (consensus). The protocol's
text checks then apply as they did to the judge (:func:`skillmix.metrics.apply_text_checks` with the
folder's ``length_override`` and ``name_penalty``), and :func:`skillmix.metrics.metric_values` says
whether the row has full marks. A row with an applicable item nobody answered has no decision.

**Agreement** (:mod:`skillmix.review.agreement`, raw agreement and Cohen's kappa with bootstrap 95%
intervals), per question ``skill_1`` .. ``skill_K``, ``on_topic``, ``makes_sense``, ``within_length``,
all skill items pooled (``skills``) and ``full_marks``:

* ``judge_human``: the judge's decided points (the row's ``points``, ``full_marks``) against the humans'
  combined answers (before the text checks) and the humans' full marks (after them);
* ``human_human``: on rows with two annotators, the first against the second (by user name), each
  annotator's own answers, and full marks from each one's own answers after the text checks;
* ``judge_precision_kept``: of the reviewed rows the judge kept, the share the humans also give full marks
  (the combined decision above), with its bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skillmix.metrics import apply_text_checks, majority_vote, metric_values
from skillmix.review.agreement import agreement, proportion
from skillmix.review.records import LABELS, position, question_names

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

    @property
    def k(self) -> int:
        return int(self.row["k"])

    @property
    def full_marks(self) -> float | None:
        return None if self.decided is None else float(metric_values(self.decided, self.k)[0])


def checked(points: np.ndarray, row: Mapping[str, Any], config: Mapping[str, Any]) -> np.ndarray | None:
    """``points`` after the folder's text checks; None when an item is missing."""
    if np.isnan(points).any():
        return None
    return apply_text_checks(
        points,
        int(row["k"]),
        row.get("answer"),
        list(row["skills"]),
        length_override=bool(config.get("length_override", True)),
        name_penalty=bool(config.get("name_penalty", True)),
    )


def decide(row: Mapping[str, Any], annotations: Sequence[Annotation], config: Mapping[str, Any]) -> Decision:
    """The human decision of ``row`` from its annotations (at least one; see the module docstring)."""
    k = int(row["k"])
    annotations = sorted(annotations, key=lambda a: a.user)
    human = majority_vote(np.stack([a.points(k) for a in annotations]))
    return Decision(dict(row), list(annotations), human, checked(human, row, config))


def _own_full_marks(annotation: Annotation, row: Mapping[str, Any], config: Mapping[str, Any]) -> float:
    decided = checked(annotation.points(int(row["k"])), row, config)
    return np.nan if decided is None else float(metric_values(decided, int(row["k"]))[0])


def _items(max_k: int) -> list[str]:
    return [*question_names(max_k)[:max_k], "skills", *question_names(max_k)[max_k:], "full_marks"]


def _pairs(
    decisions: Sequence[Decision], item: str, value_a: Any, value_b: Any
) -> tuple[list[float], list[float]]:
    """The two raters' values of ``item`` over the decisions (``value_x(decision, index)``)."""
    a, b = [], []
    for d in decisions:
        if item == "full_marks":
            indexes: list[int | None] = [None]
        elif item == "skills":
            indexes = list(range(d.k))
        else:
            indexes = [position(item, d.k)] if position(item, d.k) is not None else []
        for index in indexes:
            a.append(value_a(d, index))
            b.append(value_b(d, index))
    return a, b


def figures(
    decisions: Sequence[Decision], config: Mapping[str, Any], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The agreement figures of the module docstring (JSON-ready)."""
    max_k = max((d.k for d in decisions), default=1)

    def judge(d: Decision, i: int | None) -> float:
        return float(d.row["full_marks"]) if i is None else float(d.row["points"][i])

    def humans(d: Decision, i: int | None) -> float:
        return (np.nan if d.full_marks is None else d.full_marks) if i is None else float(d.human[i])

    def rater(n: int) -> Any:
        def value(d: Decision, i: int | None) -> float:
            note = d.annotations[n]
            return _own_full_marks(note, d.row, config) if i is None else float(note.points(d.k)[i])

        return value

    double = [d for d in decisions if len(d.annotations) >= 2]
    return {
        "judge_human": {
            item: agreement(*_pairs(decisions, item, judge, humans), n_boot=n_boot, seed=seed)
            for item in _items(max_k)
        },
        "human_human": {
            item: agreement(*_pairs(double, item, rater(0), rater(1)), n_boot=n_boot, seed=seed)
            for item in _items(max_k)
        },
        "judge_precision_kept": proportion(
            [humans(d, None) for d in decisions if d.row["outcome"] == "kept"], n_boot=n_boot, seed=seed
        ),
    }
