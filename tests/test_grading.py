"""Tests for skillmix.grading: rubric labels and parsing of grader outputs."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from skillmix.grading import Grade, max_sentences, number_word, parse_grade, rubric_items

K1 = (["metaphor"], "Sewing")
K2 = (["red herring", "modus ponens"], "The Ottoman Empire")
K3 = (["accident (fallacy)", "self serving bias", "metaphor"], "Sewing")


@dataclass(frozen=True)
class FakeSkill:
    name: str
    category: str = "rhetorical"


# --- realistic grader outputs (as GPT-4 writes them) -------------------------------------------------

GPT4_K1 = """| Criteria | Points Earned |
|----------|---------------|
| Correctly illustrates metaphor | 1 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
| Total Points Earned | 4 |

Explanation: The text compares the seam to "a river of thread", a clear metaphor, it is about sewing, it is
coherent and it is a single sentence.
"""

GPT4_K2 = """Here is my evaluation of the text:

| Criteria | Points Earned |
|---|---|
| Correctly illustrates red herring | 1 |
| Correctly illustrates modus ponens | 0 |
| Pertains to The Ottoman Empire | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
| Total Points Earned | 4 |

Explanation: The mention of the sultan's tulip gardens distracts from the question of taxation, which is a
red herring. However, the text never states a conditional and its antecedent, so modus ponens is not
illustrated: "if the Janissaries revolt" is raised but nothing follows from it.
"""

GPT4_K3 = """| Criteria | Points Earned |
|:-----------------------------------------|:-------------:|
| Correctly illustrates accident (fallacy) | 1 |
| Correctly illustrates self serving bias | 1 |
| Correctly illustrates metaphor | 0 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most two sentences | 0 |
| **Total Points Earned** | **4** |

Explanation: The speaker applies the rule "always backstitch" to a basting seam (accident) and credits the
neat hem to skill but the puckered one to the machine (self serving bias). No metaphor is present. The text
has three sentences (split on: "Of course. My hem...").
"""


@pytest.mark.parametrize(
    ("output", "case", "expected"),
    [
        (GPT4_K1, K1, [1, 1, 1, 1]),
        (GPT4_K2, K2, [1, 0, 1, 1, 1]),
        (GPT4_K3, K3, [1, 1, 0, 1, 1, 0]),
    ],
    ids=["k1", "k2", "k3"],
)
def test_clean_gpt4_tables(output, case, expected):
    grade = parse_grade(output, *case)
    assert grade.ok
    assert grade.points == expected
    assert grade.fmt == "table"
    assert grade.reported_total == sum(expected)
    assert grade.notes == ()


# --- rubric helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "word"), [(1, "one"), (2, "two"), (5, "five"), (9, "nine"), (10, "ten"), (11, "11"), (0, "0")]
)
def test_number_word(n, word):
    assert number_word(n) == word


@pytest.mark.parametrize(("k", "limit"), [(0, 1), (1, 1), (2, 1), (3, 2), (5, 4)])
def test_max_sentences(k, limit):
    assert max_sentences(k) == limit


def test_rubric_items_k3():
    assert rubric_items(*K3) == [
        "Correctly illustrates accident (fallacy)",
        "Correctly illustrates self serving bias",
        "Correctly illustrates metaphor",
        "Pertains to Sewing",
        "Text makes sense",
        "At most two sentences",
    ]


def test_rubric_items_k1_singular_and_objects():
    assert rubric_items([FakeSkill("metaphor")], "Sewing") == [
        "Correctly illustrates metaphor",
        "Pertains to Sewing",
        "Text makes sense",
        "At most one sentence",
    ]


def test_rubric_items_large_k_uses_digits():
    skills = [f"skill{i}" for i in range(12)]
    assert rubric_items(skills, "Knots")[-1] == "At most 11 sentences"
    assert rubric_items(skills[:11], "Knots")[-1] == "At most ten sentences"


def test_skill_objects_accepted_by_parser():
    skills = [FakeSkill("red herring"), FakeSkill("modus ponens", "logical")]
    assert parse_grade(GPT4_K2, skills, "The Ottoman Empire").points == [1, 0, 1, 1, 1]


# --- noise in the table -------------------------------------------------------------------------------

NOISY_K2 = {
    "bold_and_spaces": """
|   **Criteria**   |   **Points Earned**   |
|   ---   |   ---   |
|  **Correctly illustrates red herring**  |   **1**   |
|Correctly illustrates   modus ponens|**0**|
| **Pertains to The Ottoman Empire** | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
| **Total Points Earned** | **4** |
""",
    "no_outer_pipes": """Criteria | Points Earned
--- | ---
Correctly illustrates red herring | 1
Correctly illustrates modus ponens | 0
Pertains to The Ottoman Empire | 1
Text makes sense | 1
At most one sentence | 1
Total Points Earned | 4
""",
    "fractions": """| Criteria | Points Earned |
|---|---|
| Correctly illustrates red herring | 1/1 |
| Correctly illustrates modus ponens | 0/1 |
| Pertains to The Ottoman Empire | 1 / 1 |
| Text makes sense | 1/1 |
| At most one sentence | 1/1 |
| Total Points Earned | 4/5 |
""",
    "decimals_and_words": """| Criteria | Points Earned |
|:---|---:|
| Correctly illustrates red herring | 1.0 |
| Correctly illustrates modus ponens | 0.0 |
| Pertains to The Ottoman Empire | 1 point |
| Text makes sense | 1 (correct) |
| At most one sentence | 1 - one sentence only |
| Total Points Earned | 4.0 |
""",
    "check_marks": """| Criteria | Points Earned |
|:--|:--|
| Correctly illustrates red herring | ✓ |
| Correctly illustrates modus ponens | ✗ |
| Pertains to The Ottoman Empire | ✅ |
| Text makes sense | ✔ |
| At most one sentence | ✓ |
""",
    "prose_and_code_fence": """Sure! Here is my evaluation of the text based on the rubric:

```markdown
| Criteria | Points Earned |
|----------|---------------|
| Correctly illustrates red herring | 1 |
| Correctly illustrates modus ponens | 0 |
| Pertains to The Ottoman Empire | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
| Total Points Earned | 4 |
```

Explanation: The tulip gardens are a red herring; no conditional reasoning appears. I hope this helps!
""",
    "renamed_header": """| Rubric item | Score |
|---|---|
| Correctly illustrates red herring | 1 |
| Correctly illustrates modus ponens | 0 |
| Pertains to The Ottoman Empire | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
| Total | 4 |
""",
    "header_without_alignment_row": """| Criteria | Points Earned |
| Correctly illustrates red herring | 1 |
| Correctly illustrates modus ponens | 0 |
| Pertains to The Ottoman Empire | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
| Total Points | 4 |
""",
    "no_header": """| Correctly illustrates red herring | 1 |
| Correctly illustrates modus ponens | 0 |
| Pertains to The Ottoman Empire | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
""",
    "extra_columns": """| # | Criterion | Points | Comment |
|---|---|---|---|
| 1 | Correctly illustrates red herring | 1 | The tulips distract from taxes. |
| 2 | Correctly illustrates modus ponens | 0 | No "if P then Q; P; so Q". |
| 3 | Pertains to The Ottoman Empire | 1 | About the sultan's court. |
| 4 | Text makes sense | 1 | Clear. |
| 5 | At most one sentence | 1 | One sentence. |
| | **Total Points Earned** | **4** | |
""",
    "windows_line_endings": GPT4_K2.replace("\n", "\r\n"),
}


@pytest.mark.parametrize("name", sorted(NOISY_K2))
def test_noisy_tables(name):
    grade = parse_grade(NOISY_K2[name], *K2)
    assert grade.error is None, grade.error
    assert grade.points == [1, 0, 1, 1, 1]
    assert grade.fmt == "table"


@pytest.mark.parametrize("name", ["bold_and_spaces", "no_outer_pipes", "fractions", "decimals_and_words"])
def test_noisy_tables_read_the_total(name):
    grade = parse_grade(NOISY_K2[name], *K2)
    assert grade.reported_total == 4
    assert grade.notes == ()


# --- matching rows by meaning -------------------------------------------------------------------------


def test_reordered_rows_are_put_in_rubric_order():
    output = """| Criteria | Points Earned |
|---|---|
| At most two sentences | 0 |
| Text makes sense | 1 |
| Correctly illustrates metaphor | 1 |
| Pertains to Sewing | 1 |
| Correctly illustrates self serving bias | 0 |
| Correctly illustrates accident (fallacy) | 1 |
| Total Points Earned | 4 |
"""
    grade = parse_grade(output, *K3)
    assert grade.points == [1, 0, 1, 1, 1, 0]
    assert grade.notes == ()


def test_renamed_rows_matched_by_meaning():
    output = """| Criterion | Points |
|---|---|
| Use of red herring | 1 |
| Modus ponens is demonstrated logically | 1 |
| Relevance to the topic | 0 |
| Coherence | 1 |
| Length (max 1 sentence) | 1 |
| **Total** | **4** |
"""
    grade = parse_grade(output, *K2)
    assert grade.points == [1, 1, 0, 1, 1]
    assert grade.reported_total == 4


@pytest.mark.parametrize(
    ("topic_label", "sense_label", "length_label"),
    [
        ("Pertains to the ottoman empire", "Text is logically coherent", "Concise (one sentence)"),
        ("PERTAINS TO THE OTTOMAN EMPIRE", "Meaningful and understandable", "At most one sentence"),
        ("About Ottoman Empire", "Grammatical, makes sense", "Sentence count"),
        ("On-topic", "The text is logical", "Length"),
        ("Related to The Ottoman Empire", "Sensible text", "Brevity"),
    ],
)
def test_non_skill_rows_by_keyword(topic_label, sense_label, length_label):
    output = (
        "| Criteria | Points Earned |\n|---|---|\n"
        "| Correctly illustrates red herring | 1 |\n| Correctly illustrates modus ponens | 1 |\n"
        f"| {length_label} | 0 |\n| {topic_label} | 1 |\n| {sense_label} | 1 |\n"
    )
    assert parse_grade(output, *K2).points == [1, 1, 1, 1, 0]


def test_first_keyword_wins_between_sense_and_length():
    output = """| Makes sense (well-formed sentences) | 0 |
| At most two sentences, which is concise and coherent | 1 |
| Correctly illustrates accident (fallacy) | 1 |
| Correctly illustrates self serving bias | 1 |
| Correctly illustrates metaphor | 1 |
| Pertains to Sewing | 1 |
"""
    assert parse_grade(output, *K3).points == [1, 1, 1, 1, 0, 1]


@pytest.mark.parametrize(
    ("accident_label", "bias_label"),
    [
        ("Illustrates accident", "Illustrates self-serving bias"),
        ("Accident (fallacy) used correctly", "self_serving_bias"),
        ("**Accident fallacy** shown", "Self Serving Bias shown"),
    ],
)
def test_skill_name_variants(accident_label, bias_label):
    output = f"""| Criteria | Points |
|---|---|
| {accident_label} | 0 |
| {bias_label} | 1 |
| Metaphor | 1 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most two sentences | 1 |
"""
    assert parse_grade(output, *K3).points == [0, 1, 1, 1, 1, 1]


def test_logical_skill_row_is_a_skill_row_not_sense():
    output = """| Criteria | Points Earned |
|---|---|
| Correctly illustrates red herring | 1 |
| Logical reasoning: modus ponens | 0 |
| Pertains to The Ottoman Empire | 1 |
| Logically coherent text | 1 |
| At most one sentence | 1 |
"""
    assert parse_grade(output, *K2).points == [1, 0, 1, 1, 1]


def test_generic_labels_fall_back_to_position():
    output = """| Criteria | Points Earned |
|---|---|
| Skill 1 | 1 |
| Skill 2 | 0 |
| Criterion 3 | 1 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most two sentences | 1 |
| Total Points Earned | 5 |
"""
    grade = parse_grade(output, *K3)
    assert grade.points == [1, 0, 1, 1, 1, 1]
    assert any("rows matched by position" in note and "'Skill 1'" in note for note in grade.notes)


def test_generic_labels_with_wrong_row_count_are_not_guessed():
    output = """| Skill 1 | 1 |
| Skill 2 | 1 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most two sentences | 1 |
"""
    grade = parse_grade(output, *K3)
    assert not grade.ok
    assert grade.error == "missing rubric rows: Correctly illustrates accident (fallacy), " + (
        "Correctly illustrates self serving bias, Correctly illustrates metaphor"
    )


def test_row_naming_two_skills_is_ignored():
    output = """| Correctly illustrates red herring and modus ponens | 1 |
| Pertains to The Ottoman Empire | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
"""
    grade = parse_grade(output, *K2)
    assert "missing rubric rows: Correctly illustrates red herring, Correctly illustrates modus ponens" in (
        grade.error or ""
    )
    assert any("ignored row" in note for note in grade.notes)


def test_unknown_extra_row_is_noted_not_fatal():
    output = GPT4_K1.replace("| Total Points Earned", "| Creativity | 1 |\n| Total Points Earned")
    grade = parse_grade(output, *K1)
    assert grade.points == [1, 1, 1, 1]
    assert grade.notes == ("ignored row 'Creativity'",)


# --- totals, duplicates and bad points ----------------------------------------------------------------


def test_total_mismatch_is_a_note():
    grade = parse_grade(GPT4_K2.replace("| Total Points Earned | 4 |", "| Total Points Earned | 5 |"), *K2)
    assert grade.ok
    assert grade.points == [1, 0, 1, 1, 1]
    assert grade.reported_total == 5
    assert grade.notes == ("reported total 5 != sum of points 4",)


def test_unreadable_total_is_a_note():
    grade = parse_grade(GPT4_K1.replace("| Total Points Earned | 4 |", "| Total Points Earned | all |"), *K1)
    assert grade.ok
    assert grade.reported_total is None
    assert any("could not read reported total" in note for note in grade.notes)


def test_duplicate_rows_that_disagree_are_an_error():
    output = GPT4_K1.replace("| Text makes sense | 1 |", "| Text makes sense | 1 |\n| Coherence | 0 |")
    grade = parse_grade(output, *K1)
    assert grade.points is None
    assert "conflicting rows for 'Text makes sense'" in grade.error


def test_duplicate_rows_that_agree_are_a_note():
    output = GPT4_K1.replace("| Text makes sense | 1 |", "| Text makes sense | 1 |\n| Coherence | 1 |")
    grade = parse_grade(output, *K1)
    assert grade.points == [1, 1, 1, 1]
    assert "2 rows for 'Text makes sense' agree" in grade.notes


@pytest.mark.parametrize("bad", ["0.5", "2", "partial", "", "1/2", "½", "N/A", "-1"])
def test_points_other_than_zero_or_one_are_an_error(bad):
    row = "| Correctly illustrates modus ponens |"
    output = GPT4_K2.replace(f"{row} 0 |", f"{row} {bad} |")
    grade = parse_grade(output, *K2)
    assert grade.points is None
    assert not grade.ok
    assert "invalid points for 'Correctly illustrates modus ponens'" in grade.error
    assert "missing" not in grade.error


def test_half_point_error_message():
    output = GPT4_K1.replace("| Pertains to Sewing | 1 |", "| Pertains to Sewing | 0.5 |")
    assert parse_grade(output, *K1).error == (
        "invalid points for 'Pertains to Sewing' (row 'Pertains to Sewing'): '0.5' is not 0 or 1"
    )


# --- truncated, empty and unparseable -----------------------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        "| Text makes sense",  # cut inside a label
        "| Text makes sense |",  # cut before the points cell
        "| Text mak",
        "\n| Text makes sense | 1 |",  # cut at a row boundary
    ],
)
def test_truncated_table_lists_missing_rows(cut):
    output = GPT4_K3[: GPT4_K3.index("| Text makes sense")] + cut
    grade = parse_grade(output, *K3)
    assert grade.points is None
    assert grade.fmt == "table"
    if cut.endswith("| 1 |"):
        assert grade.error == "missing rubric rows: At most two sentences"
    else:
        assert grade.error == "missing rubric rows: Text makes sense, At most two sentences"


@pytest.mark.parametrize("output", [None, "", "   ", "\n\n\t\r\n"])
def test_empty_output(output):
    grade = parse_grade(output, *K1)
    assert grade == Grade(None, error="empty grader output")
    assert not grade.ok


@pytest.mark.parametrize(
    "output",
    [
        "I'm sorry, but I can't evaluate this text.",
        "The text is quite good overall. It uses a metaphor and is about sewing.",
        "Points Earned: see below.",
        "| just | a | header |\n|---|---|---|",
    ],
)
def test_no_grading_found(output):
    assert parse_grade(output, *K1).error == "no rubric table, JSON or point lines found"


# --- JSON outputs -------------------------------------------------------------------------------------

JSON_K2 = """{"criteria": [
  {"criterion": "Correctly illustrates red herring", "points": 1},
  {"criterion": "Correctly illustrates modus ponens", "points": 0},
  {"criterion": "Pertains to The Ottoman Empire", "points": 1},
  {"criterion": "Text makes sense", "points": 1},
  {"criterion": "At most one sentence", "points": 1}
], "total": 4, "explanation": "The tulips distract from the tax question; there is no conditional."}"""


@pytest.mark.parametrize(
    "output",
    [
        JSON_K2,
        "```json\n" + JSON_K2 + "\n```",
        "Here is my grading in the requested format:\n\n" + JSON_K2 + "\n\nLet me know if you need more.",
    ],
    ids=["bare", "fenced", "prose"],
)
def test_json_criteria_list(output):
    grade = parse_grade(output, *K2)
    assert grade.ok
    assert grade.fmt == "json"
    assert grade.points == [1, 0, 1, 1, 1]
    assert grade.reported_total == 4


@pytest.mark.parametrize(
    ("one", "zero"),
    [("1", "0"), ("1.0", "0.0"), ('"1"', '"0"'), ('"1/1"', '"0/1"'), ("true", "false"), ('"1 point"', '"0"')],
)
def test_json_point_value_types(one, zero):
    output = JSON_K2.replace('"points": 1', f'"points": {one}').replace('"points": 0', f'"points": {zero}')
    assert parse_grade(output, *K2).points == [1, 0, 1, 1, 1]


def test_json_flat_dict():
    output = """```json
{"Correctly illustrates accident (fallacy)": 1, "Correctly illustrates self serving bias": 0,
 "Correctly illustrates metaphor": 1, "Pertains to Sewing": 1, "Text makes sense": 1,
 "At most two sentences": 1, "total": 6, "explanation": "All but the bias."}
```"""
    grade = parse_grade(output, *K3)
    assert grade.points == [1, 0, 1, 1, 1, 1]
    assert grade.fmt == "json"
    assert grade.notes == ("reported total 6 != sum of points 5",)


def test_json_reordered_and_nested_entries():
    output = """{"grade": {"criteria": {
        "Text makes sense": {"points": 1, "reason": "clear"},
        "Pertains to Sewing": {"points": 1},
        "Correctly illustrates metaphor": {"points": 0, "reason": "literal"},
        "At most one sentence": {"points": 1}}, "total_points": 3}}"""
    grade = parse_grade(output, *K1)
    assert grade.points == [0, 1, 1, 1]
    assert grade.reported_total == 3


def test_json_half_point_is_an_error():
    output = JSON_K2.replace('"points": 0', '"points": 0.5')
    grade = parse_grade(output, *K2)
    assert grade.fmt == "json"
    assert "invalid points for 'Correctly illustrates modus ponens'" in grade.error


def test_json_missing_criterion():
    output = JSON_K2.replace('  {"criterion": "Text makes sense", "points": 1},\n', "")
    assert parse_grade(output, *K2).error == "missing rubric rows: Text makes sense"


@pytest.mark.parametrize("cut", [40, 120, len(JSON_K2) - 30])
def test_malformed_json(cut):
    grade = parse_grade("```json\n" + JSON_K2[:cut], *K2)
    assert grade.points is None
    assert grade.error.startswith("malformed JSON: ")


def test_malformed_json_with_table_uses_table():
    output = GPT4_K2 + '\n{"criteria": [{"criterion": "Text makes'
    assert parse_grade(output, *K2).points == [1, 0, 1, 1, 1]


# --- "lines" fallback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        """1. Correctly illustrates metaphor: 1/1
2. Pertains to Sewing: 1/1
3. Text makes sense: 1/1
4. At most one sentence: 0/1
Total Points Earned: 3/4
""",
        """- Correctly illustrates metaphor - 1 point
- Pertains to Sewing - 1 point
- Text makes sense - 1 point
- At most one sentence - 0 points

Total: 3
""",
        """**Correctly illustrates metaphor:** 1
**Pertains to Sewing:** 1
**Text makes sense:** 1
**At most one sentence:** 0 (the text has two sentences)
**Total Points Earned:** 3

**Explanation:** The seam is called a river, which is a metaphor.
""",
    ],
    ids=["numbered", "dashes", "bold"],
)
def test_lines_format(output):
    grade = parse_grade(output, *K1)
    assert grade.ok
    assert grade.fmt == "lines"
    assert grade.points == [1, 1, 1, 0]
    assert grade.reported_total == 3


def test_lines_format_truncated():
    output = "1. Correctly illustrates red herring: 1\n2. Correctly illustrates modus ponens: 1\n3. Pertains"
    grade = parse_grade(output, *K2)
    assert grade.fmt == "lines"
    assert grade.error == (
        "missing rubric rows: Pertains to The Ottoman Empire, Text makes sense, At most one sentence"
    )


# --- unicode, case and robustness ---------------------------------------------------------------------


def test_unicode_and_case_in_labels():
    output = """| CRITERIA | POINTS |
|---|---|
| Ｃｏｒｒｅｃｔｌｙ illustrates METAPHOR | 1 |
| pertains to sewing | 1 |
| TEXT MAKES SENSE | 1 |
| At most one sentence | 1 |
"""
    assert parse_grade(output, *K1).points == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("skill_label", "topic_label"),
    [
        ("Correctly illustrates MÉTAPHORE FILÉE", "About ÇAY CULTURE IN İSTANBUL"),
        ("Metaphore filee", "About cay culture in istanbul"),  # accents dropped by the grader
    ],
)
def test_unicode_topic_and_skill(skill_label, topic_label):
    skills, topic = ["métaphore filée"], "Çay culture in İstanbul"
    output = f"""| Criteria | Points Earned |
|---|---|
| {topic_label} | 0 |
| {skill_label} | 1 |
| Text makes sense | 1 |
| At most one sentence | 1 |
"""
    grade = parse_grade(output, skills, topic)
    assert grade.points == [1, 0, 1, 1]
    assert grade.notes == ()


def _garble(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 12)):
        op = rng.random()
        pos = rng.randrange(len(chars) + 1)
        if op < 0.4 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op < 0.8:
            chars.insert(pos, rng.choice('|{}[]":,*-/\\\n\r 0123456789.✓✗ü'))
        else:
            chars = chars[:pos]
    return "".join(chars)


def test_never_raises_on_random_or_garbled_input():
    rng = random.Random(20241017)
    alphabet = 'ab |{}[]":,*-_/\\\n\r\t0123456789.()✓✗é#`'
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(30)]
    sources = [GPT4_K1, GPT4_K2, GPT4_K3, JSON_K2, *NOISY_K2.values()]
    samples += [_garble(rng.choice(sources), rng) for _ in range(60)]
    samples += ["{" * 5000, "[" * 3000 + "]" * 3000, "|" * 2000, "\x00\ufeff|\u202e1|", "1:" * 500]
    for case in (K1, K2, K3):
        for sample in samples:
            grade = parse_grade(sample, *case)
            assert isinstance(grade, Grade)
            assert (grade.points is None) == (grade.error is not None) == (not grade.ok)
            assert "internal parser error" not in (grade.error or ""), (sample, grade.error)
            if grade.ok:
                assert len(grade.points) == len(case[0]) + 3
                assert set(grade.points) <= {0, 1}


def test_non_string_output_is_an_error_not_an_exception():
    assert parse_grade(42, *K1).error == "grader output is a int, not a string"  # type: ignore[arg-type]
