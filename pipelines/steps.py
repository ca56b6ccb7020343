"""The deciding step: from the judge's runs to the decided points, metrics and the row's outcome.

For each row: majority vote over the grader runs that parsed (a run that could not be parsed does not vote),
then the text checks of the run's :class:`skillmix.rules.ScoringRules` (the length point by the sentence
counter, the explicit-name penalty), the three metrics, and the outcome:

* ``kept``: every one of the k+3 decided points earned;
* ``rejected``: graded, but some point missed (``failed_points`` names them);
* ``failed``: no usable generation or no parseable grade (``failure_reason`` says which and why): never
  kept, whatever the rules' ``unparseable`` (a rule for means over combinations, not for one row).
"""

from typing import Any

import numpy as np
from distilabel.steps.base import Step, StepInput

from skillmix.grading import rubric_items
from skillmix.metrics import apply_text_checks, majority_vote, metric_values
from skillmix.pipelines.progress import ProgressLog
from skillmix.rules import ScoringRules
from skillmix.text import count_sentences, named_skills

GENERATION_STAGES = ("round1", "round2")


def decide_row(row: dict[str, Any], rules: ScoringRules) -> dict[str, Any]:
    """The decision of one graded row under ``rules`` (module docstring): its points, metrics, outcome."""
    k = len(row["skills"])
    out: dict[str, Any] = {
        "points": None,
        "full_marks": None,
        "all_skills": None,
        "skill_fraction": None,
        "failed_points": [],
        "sentences": count_sentences(row.get("answer")),
        "named_skills": named_skills(row.get("answer"), row["skills"]),
        "status": "ok",
        "failure_reason": None,
    }
    for stage in GENERATION_STAGES:
        if row.get(f"{stage}_status") != "ok":
            out.update(
                outcome="failed",
                status=row.get(f"{stage}_status") or "api_error",
                failure_reason=f"{stage}: {row.get(f'{stage}_error')}",
            )
            return out
    statuses = row.get("grader_status") or []
    runs = [p for p, s in zip(row.get("grader_points") or [], statuses, strict=False) if s == "ok" and p]
    if not runs:
        errors = [e for e in row.get("grader_errors") or [] if e]
        first = next((s for s in statuses if s != "ok"), "api_error")
        out.update(
            outcome="failed", status=first, failure_reason=f"grading: {'; '.join(errors) or 'no runs'}"
        )
        return out
    decided = majority_vote(np.array(runs, dtype=float))
    decided = apply_text_checks(decided, k, row["answer"], row["skills"], rules)
    full, all_skills, fraction = (float(v) for v in metric_values(decided, k))
    labels = rubric_items(row["skills"], row["topic"])
    out.update(
        points=[int(p) for p in decided],
        full_marks=full,
        all_skills=all_skills,
        skill_fraction=fraction,
        failed_points=[label for label, p in zip(labels, decided, strict=True) if p != 1],
        outcome="kept" if full == 1.0 else "rejected",
    )
    return out


class DecidePoints(Step):
    """Vote, apply the text checks and decide each row's outcome (see the module docstring)."""

    rules: ScoringRules  # the run's, from its configuration (ProtocolConfig.scoring_rules)
    progress_path: str | None = None  # the run's progress log, where finished rows are counted
    run_id: str | None = None

    @property
    def inputs(self) -> list[str]:
        return ["skills", "topic", "answer", "grader_points", "grader_status", "grader_errors"]

    @property
    def outputs(self) -> list[str]:
        return [
            "points",
            "full_marks",
            "all_skills",
            "skill_fraction",
            "failed_points",
            "sentences",
            "named_skills",
            "outcome",
            "status",
            "failure_reason",
        ]

    def process(self, inputs: StepInput):  # type: ignore[override]
        rows = [{**row, **decide_row(row, self.rules)} for row in inputs]
        if self.progress_path and self.run_id:
            ProgressLog(self.progress_path).record(self.run_id, "decide", [row["outcome"] for row in rows])
        yield rows
