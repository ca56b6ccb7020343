from __future__ import annotations

import pytest

from skillmix.text import count_sentences, extract_answer, max_sentences, named_skills, number_word


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Answer: The needle sighed.\nExplanation: personification.", "The needle sighed."),
        ("**Answer:** Bold text here.\n\n**Explanation:** why", "Bold text here."),
        ("Answer: first try\nExplanation: a\nAnswer: second try\nExplanation: b", "second try"),
        ("Sure! Answer: no explanation follows", "no explanation follows"),
        ("Answer: text\nExplanation\nbecause", "text"),
        ("Answer: text\n**Explanation**: because", "text"),
        ("ANSWER : upper case.\nEXPLANATION - x", "upper case."),
        ("Answer:\n\nMulti\nline.\n\nExplanation:", "Multi\nline."),
        ('Answer: "Quoted text," she said.\nExplanation: y', '"Quoted text," she said.'),
        ("The reference answer: is elsewhere", None),
        ("Answer:\nExplanation: nothing given", None),
        ("no marker at all", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(reply, answer):
    assert extract_answer(reply) == answer


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("", 0),
        ("   ", 0),
        ("One sentence without a full stop", 1),
        ("One. Two. Three.", 3),
        ("Is it? Yes! Fine.", 3),
        ("Mr. Smith met Dr. Jones and Prof. Lee. Mrs. Smith and Ms. Lee came too.", 2),
        ('He said "Stop." Then he left.', 2),
        ("He said \u201cStop.\u201d Then he left.", 2),
        ("The value is 3.5 and rising. ok, lower case does not start a sentence.", 1),
        ("Wait...What? No.", 2),  # no space after the dots: one break only, before "No"
        ("U.S. Army. It marched.", 3),  # the rule knows no other abbreviations: "S. Army" breaks
    ],
)
def test_count_sentences(text, n):
    assert count_sentences(text) == n


@pytest.mark.parametrize(
    ("text", "n"),
    [
        # an opening straight quote after the space still starts a sentence, as in the original code
        ('The hive hummed. "Stay calm," she said.', 2),
        ("The hive hummed. 'Stay calm,' she said.", 2),
        ('It buzzed! "Why?" "Because." Then quiet.', 4),
        ("The drone left. '\"Queen\" is a title,' he said.", 2),  # several opening quotes
        # a closing quote before the space, as before
        ('"Stay calm." She said it twice.', 2),
        ("'Stay calm.' She said it twice.", 2),
        # quotes on both sides of the space
        ('"Stay calm." "Why?" she asked.', 2),
        # a quote not followed by a capital letter: no break
        ('The hive hummed. "stay calm," she said.', 1),
        ("The hive hummed. 'tis calm now.", 1),
        ('The hive hummed. " Stay calm," she said.', 1),  # a space between the quote and the capital
        ('The hive hummed."Stay calm," she said.', 1),  # no white space after the sentence end
        # deviations from the original, kept on purpose: curly opening quotes, any white space
        ("The hive hummed. \u201cStay calm,\u201d she said.", 2),
        ("The hive hummed. \u2018Stay calm,\u2019 she said.", 2),
        ('The hive hummed.\n\n"Stay calm," she said.', 2),
        ('The hive hummed.\t  "Stay calm," she said.', 2),
        # the titles stay protected before a quote too
        ('Dr. "Honey" Smith kept bees.', 1),
    ],
)
def test_count_sentences_opening_quotes(text, n):
    assert count_sentences(text) == n


def test_limits_in_words():
    assert [max_sentences(k) for k in (1, 2, 3, 4, 5)] == [1, 1, 2, 3, 4]
    assert [number_word(n) for n in (1, 2, 10, 11)] == ["one", "two", "ten", "11"]


def test_named_skills():
    skills = ["metaphor", "self serving bias", "accident (fallacy)", "red herring", "modus ponens"]
    text = "Like a self-serving BIAS, the Red  Herring metaphorically swims by accidental design."
    assert named_skills(text, skills) == [
        "metaphor",
        "self serving bias",
        "accident (fallacy)",
        "red herring",
    ]
    assert named_skills("", skills) == [] and named_skills(None, skills) == []

    class S:
        def __init__(self, name):
            self.name = name

    assert named_skills("modus ponens applies", [S("modus ponens")]) == ["modus ponens"]
