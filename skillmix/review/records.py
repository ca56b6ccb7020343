"""What a review dataset in Argilla holds: its settings (fields, questions, metadata, guidelines,
distribution) and one record per sampled row. **Blind by default**: a record carries nothing of the
judge's verdict, so that the annotators' answers measure the judge instead of echoing it (anchoring on
pre-filled model answers is the known bias of model-assisted annotation).

* **Fields**: ``topic``; ``skills`` (markdown: the k skills in rubric order, each with its definition and
  example from the folder's catalog); ``answer``, the text; ``sentences``, the sentence limit for its k
  (not the counter's count, which would be its verdict).
* **Questions**: ``skill_1`` .. ``skill_K`` for K = the largest k of the sample, then ``on_topic``,
  ``makes_sense``, ``within_length`` (label questions, ``yes`` / ``no``) and a free-text ``comment``.
  ``skill_j`` is required only when every record has a skill j (j <= the smallest k); the others say in
  their title that they are not applicable to records with fewer skills, which leave them unanswered.
* **Metadata** of every record: ``k``, ``combination`` (the row id), ``setting``, ``annotators`` (1 or 2)
  and ``judge_shown`` (``no``, or ``yes`` for a record pushed with ``--show-judge``).
* Only a **shown** record (``--show-judge``, a correction pass) has the judge's answers as suggestions:
  its own majority vote per question (before the sentence counter and the name rule, as the questions ask),
  with ``agent`` = the judge's identity and ``score`` = the share of the grader runs that parsed which gave
  that vote; and the judge's ``outcome``, ``failed`` (the kinds of item missed) and ``judge_total`` as
  metadata hidden from annotators. The settings of a dataset with shown records differ from a blind one's
  (the options of ``judge_shown``), so the two modes never mix in one dataset unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from skillmix.release.stats import judge_vote
from skillmix.review.sample import failed_kinds
from skillmix.rules import ScoringRules
from skillmix.text import max_sentences, number_word

LABELS = ("yes", "no")
OTHER_QUESTIONS = ("on_topic", "makes_sense", "within_length")
GUIDELINES = "review_guidelines.md.jinja2"
SHOWN = "judge_shown"  # the metadata property that says whether a record shows the judge's answers
MODES = {"blind": ["no"], "shown": ["no", "yes"]}  # the options of SHOWN in each mode


def question_names(max_k: int) -> list[str]:
    """The label questions, in rubric order: ``skill_1`` .. ``skill_<max_k>``, then the other three."""
    return [*(f"skill_{j}" for j in range(1, max_k + 1)), *OTHER_QUESTIONS]


def position(question: str, k: int) -> int | None:
    """The rubric position of ``question`` for a row with ``k`` skills; None when not applicable."""
    if question.startswith("skill_"):
        j = int(question.removeprefix("skill_"))
        return j - 1 if 1 <= j <= k else None
    return k + OTHER_QUESTIONS.index(question) if question in OTHER_QUESTIONS else None


def judge_raw(row: Mapping[str, Any]) -> list[int]:
    """The judge's own vote on the row's k+3 items (before the text checks); zeros when no run graded it
    (a missing grade counts as zeros): what a shown record pre-fills and what agreement compares."""
    k = int(row["k"])
    return judge_vote(row, k) or [0] * (k + 3)


def judge_answers(row: Mapping[str, Any]) -> dict[str, tuple[str, float | None]]:
    """``{question: (label, score)}``: the judge's own vote on each question of the row (:func:`judge_raw`)
    and the share of the grader runs that parsed which gave it."""
    k = int(row["k"])
    vote = judge_raw(row)
    runs = [
        points
        for points, status in zip(
            row.get("grader_points") or [], row.get("grader_status") or [], strict=False
        )
        if status == "ok" and points and len(points) == k + 3
    ]
    return {
        question: (
            LABELS[0] if vote[i] == 1 else LABELS[1],
            sum(points[i] == vote[i] for points in runs) / len(runs) if runs else None,
        )
        for i, question in enumerate(question_names(k))
    }


def skills_markdown(skills: Sequence[str], catalog: Any) -> str:
    """The skills in rubric order, numbered, each with its definition and example."""
    by_name = {skill.name: skill for skill in catalog.skills}
    lines = []
    for j, name in enumerate(skills, start=1):
        skill = by_name.get(name)
        if skill is None:
            lines.append(f"{j}. **{name}**")
        else:
            lines.append(f"{j}. **{name}**: {skill.definition}  \n   *Example:* {skill.example}")
    return "\n".join(lines)


def fields(row: Mapping[str, Any], catalog: Any) -> dict[str, str]:
    k = int(row["k"])
    limit = max_sentences(k)
    return {
        "topic": str(row["topic"]),
        "skills": skills_markdown(list(row["skills"]), catalog),
        "answer": str(row.get("answer") or ""),
        "sentences": f"At most {number_word(limit)} {'sentence' if limit == 1 else 'sentences'} "
        f"(the limit for {k} {'skill' if k == 1 else 'skills'})",
    }


def metadata(row: Mapping[str, Any], annotators: int, shown: bool) -> dict[str, Any]:
    """A record's metadata; the judge's outcome, misses and total only on a shown record."""
    out = {
        "k": int(row["k"]),
        "combination": str(row["id"]),
        "setting": str(row.get("setting") or "unknown"),
        "annotators": annotators,
        SHOWN: "yes" if shown else "no",
    }
    if shown:
        out |= {
            "outcome": str(row["outcome"]),
            "failed": failed_kinds(row["points"], int(row["k"])),
            "judge_total": int(sum(row["points"])),
        }
    return out


def render_guidelines(ks: Sequence[int], judge: str, rules: ScoringRules, mode: str = "blind") -> str:
    """The annotation guidelines (markdown) for a sample whose rows have the k values ``ks``, under the
    folder's scoring ``rules``, in ``mode`` (``blind``, or ``shown`` when some records show the judge's
    answers)."""
    import jinja2

    template = (resources.files("skillmix.cards") / GUIDELINES).read_text("utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    return env.from_string(template).render(
        ks=", ".join(str(k) for k in sorted(set(ks))),
        max_k=max(ks),
        min_k=min(ks),
        judge=judge,
        mode=mode,
        name_penalty=rules.name_penalty,
        length_override=rules.length_override,
    )


def build_settings(
    rg: Any, ks: Sequence[int], min_submitted: int, guidelines: str, mode: str = "blind"
) -> Any:
    """The ``argilla.Settings`` of a review dataset for rows with the k values ``ks``, in ``mode``."""
    max_k, min_k = max(ks), min(ks)

    def skill_question(j: int) -> Any:
        always = j <= min_k  # else not applicable to the records with fewer than j skills
        title = f"Skill {j} correctly illustrated?"
        description = f"Does the text correctly illustrate skill {j} of the list?"
        if not always:
            title += f" (n/a with fewer than {j} skills)"
            description += f" Not applicable to a text with fewer than {j} skills: leave it empty."
        return rg.LabelQuestion(
            name=f"skill_{j}", labels=list(LABELS), required=always, title=title, description=description
        )

    skill_questions = [skill_question(j) for j in range(1, max_k + 1)]
    titles = {
        "on_topic": "Pertains to the topic?",
        "makes_sense": "Text makes sense?",
        "within_length": "Within the sentence limit?",
    }
    hidden = {"visible_for_annotators": False}
    return rg.Settings(
        guidelines=guidelines,
        fields=[
            rg.TextField(name="topic", title="Topic"),
            rg.TextField(name="skills", title="Skills (numbered as the skill questions)", use_markdown=True),
            rg.TextField(name="answer", title="Text"),
            rg.TextField(name="sentences", title="Sentence limit"),
        ],
        questions=[
            *skill_questions,
            *(
                rg.LabelQuestion(name=name, title=title, labels=list(LABELS))
                for name, title in titles.items()
            ),
            rg.TextQuestion(name="comment", title="Comment (optional)", required=False),
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="k"),
            rg.TermsMetadataProperty(name="combination", title="combination id"),
            rg.TermsMetadataProperty(name="setting"),
            rg.TermsMetadataProperty(name="outcome", title="judge's outcome", **hidden),
            rg.TermsMetadataProperty(name="failed", title="judge: items missed", **hidden),
            rg.IntegerMetadataProperty(name="judge_total", title="judge's total", **hidden),
            rg.IntegerMetadataProperty(name="annotators"),
            rg.TermsMetadataProperty(
                name=SHOWN, title="judge's answers shown", options=MODES[mode], **hidden
            ),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def signature(settings: Any) -> dict[str, Any]:
    """What makes two review datasets the same: fields, questions (type, labels, required), metadata
    names, the mode (blind or shown) and the distribution (not the guidelines' wording)."""
    return {
        "fields": [field.name for field in settings.fields],
        "questions": [
            (q.name, type(q).__name__, list(getattr(q, "labels", None) or []), bool(q.required))
            for q in settings.questions
        ],
        "metadata": sorted(prop.name for prop in settings.metadata),
        "mode": mode_of(settings),
        "min_submitted": settings.distribution.min_submitted,
    }


def mode_of(settings: Any) -> str | None:
    """``blind`` or ``shown``, from the options of the ``judge_shown`` property (None: a dataset pushed
    before review records were blind, in which every record showed the judge's answers)."""
    prop = next((p for p in settings.metadata if p.name == SHOWN), None)
    options = sorted(getattr(prop, "options", None) or [])
    return next((mode for mode, wanted in MODES.items() if options == sorted(wanted)), None)


def build_record(
    rg: Any,
    row: Mapping[str, Any],
    catalog: Any,
    agent: str,
    annotators: int,
    shown: bool = False,
    judge_user: Any = None,
) -> Any:
    """The ``argilla.Record`` of a row (id = the row id): blind, or with the judge's answers as suggestions
    when ``shown``. With ``judge_user`` (a user id), a placeholder response of that user completes a record
    meant for one annotator (see :mod:`skillmix.review.push`)."""
    answers = judge_answers(row)
    responses = []
    if judge_user is not None:
        responses = [rg.Response(q, value, judge_user, "submitted") for q, (value, _) in answers.items()]
    suggestions = [rg.Suggestion(q, v, score=score, agent=agent) for q, (v, score) in answers.items()]
    return rg.Record(
        id=str(row["id"]),
        fields=fields(row, catalog),
        metadata=metadata(row, annotators, shown),
        suggestions=suggestions if shown else [],
        responses=responses,
    )
