from __future__ import annotations

import json

import pytest
import yaml

from skillmix.catalog import CATEGORIES, CatalogError, load_catalog

RELEASED_SKILLS = {
    "self serving bias": "reasoning",
    "accident (fallacy)": "rhetorical",
    "complex question (loaded question with implicit assumption)": "rhetorical",
    "red herring": "rhetorical",
    "metaphor": "literary",
    "spatial reasoning": "logical",
    "modus ponens": "logical",
    "statistical syllogism": "logical",
    "emotional self regulation": "theory of mind",
    "folk physics (common knowledge physics)": "physical knowledge",
}
RELEASED_TOPICS = [
    "Sewing", "Dueling", "The Ottoman Empire", "Urbanism", "Beekeeping",
    "Survivalism", "Guerilla warfare", "Triathlons", "Gardening", "Knots",
]  # fmt: skip


def test_builtin_sizes_and_categories(builtin):
    assert len(builtin.skills) >= 101
    assert len(builtin.topics) == 100
    assert sum(s.category in ("literary", "rhetorical") for s in builtin.skills) == 53
    assert {s.category for s in builtin.skills} == set(CATEGORIES)
    assert len({s.name for s in builtin.skills}) == len(builtin.skills)


def test_builtin_has_released_names(builtin):
    by_name = {s.name: s for s in builtin.skills}
    for name, category in RELEASED_SKILLS.items():
        assert by_name[name].category == category
    for topic in RELEASED_TOPICS:
        assert topic in builtin.topics


def test_builtin_entries_are_complete(builtin):
    for skill in builtin.skills:
        assert skill.definition and skill.example, skill.name
        assert skill.name.split("(")[0].strip().lower() not in skill.example.lower(), skill.name


def write_csv(tmp_path, text):
    path = tmp_path / "skills.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_in_original_layout_with_extra_columns(tmp_path):
    path = write_csv(
        tmp_path,
        "id,Category,skill,definition,example,source\n"
        '1,Literary,metaphor,"A figure of speech, implied comparison.","Time is a thief.",x\n'
        "2,Theory_of-Mind,emotional self regulation,Managing one's feelings.,She counted to ten.,y\n"
        "\n"
        "3,rhetorical,red herring,A distraction.,But what about the weather?,z\n",
    )
    catalog = load_catalog(path)
    assert [s.name for s in catalog.skills] == ["metaphor", "emotional self regulation", "red herring"]
    assert catalog.skills[1].category == "theory of mind"
    assert catalog.skills[0].definition == "A figure of speech, implied comparison."
    assert catalog.topics == load_catalog().topics  # a skills CSV takes the built-in topics


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("category,skill,definition\nliterary,metaphor,x\n", "missing column 'example'"),
        (
            "category,skill,definition,example\nliterary,metaphor,d,e\nliterary, ,d,e\n",
            "row 3: empty skill name",
        ),
        (
            "category,skill,definition,example\nliterary,metaphor,d,e\nrhetorical,x,d,e\nliterary,Metaphor,d,e\n",
            "row 4: duplicate skill 'Metaphor' (first at",
        ),
        (
            "category,skill,definition,example\nliterary,metaphor,,e\n",
            "row 2: skill 'metaphor' has an empty definition",
        ),
        ("", "empty file"),
    ],
)
def test_malformed_csv_names_the_row(tmp_path, text, message):
    with pytest.raises(CatalogError, match=message.replace("(", r"\(")):
        load_catalog(write_csv(tmp_path, text))


def test_unknown_category_is_rejected_when_splitting(tmp_path):
    path = write_csv(
        tmp_path,
        "category,skill,definition,example\n"
        "literary,metaphor,d,e\nlogical,modus ponens,d,e\nmagic,spells,d,e\n",
    )
    catalog = load_catalog(path)  # loading alone is fine
    with pytest.raises(CatalogError, match=r"row 4: unknown category 'magic' for skill 'spells'"):
        catalog.split(0)


def test_yaml_and_json_catalogs_with_topics(tmp_path):
    data = {
        "skills": [
            {"name": "metaphor", "category": "literary", "definition": "d", "example": "e"},
            {"skill": "modus ponens", "category": "logical", "definition": "d", "example": "e"},
        ],
        "topics": ["Sewing", "Knots"],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "c.json").write_text(json.dumps(data))
    a, b = load_catalog(tmp_path / "c.yaml"), load_catalog(tmp_path / "c.json")
    assert a.skills == b.skills and a.topics == b.topics == ("Sewing", "Knots")
    assert a.hash == b.hash


def test_yaml_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("skills: [ {name: x")
    with pytest.raises(CatalogError, match="cannot parse catalog"):
        load_catalog(tmp_path / "bad.yaml")
    (tmp_path / "dup.yaml").write_text(
        yaml.safe_dump(
            {
                "skills": [{"name": "a", "category": "literary", "definition": "d", "example": "e"}],
                "topics": ["Knots", "knots"],
            }
        )
    )
    with pytest.raises(CatalogError, match="topic 2: duplicate topic 'knots'"):
        load_catalog(tmp_path / "dup.yaml")
    with pytest.raises(CatalogError, match="entry 1: expected a mapping"):
        (tmp_path / "list.yaml").write_text("skills: [just-a-string]")
        load_catalog(tmp_path / "list.yaml")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(CatalogError, match="no such catalog file"):
        load_catalog(tmp_path / "nope.csv")
    (tmp_path / "skills.xlsx").write_text("x")
    with pytest.raises(CatalogError, match="unknown catalog format"):
        load_catalog(tmp_path / "skills.xlsx")


def test_topics_override_from_text_and_csv(tmp_path):
    (tmp_path / "topics.txt").write_text("Knots\n\nSewing\n")
    (tmp_path / "topics.csv").write_text("topic,notes\nKnots,a\nSewing,b\n")
    assert load_catalog(topics=tmp_path / "topics.txt").topics == ("Knots", "Sewing")
    assert load_catalog(topics=tmp_path / "topics.csv").topics == ("Knots", "Sewing")
    (tmp_path / "bad.csv").write_text("name\nKnots\n")
    with pytest.raises(CatalogError, match="missing column 'topic'"):
        load_catalog(topics=tmp_path / "bad.csv")


def test_hash_ignores_file_order_but_not_content(tmp_path):
    rows = ["literary,metaphor,d1,e1", "logical,modus ponens,d2,e2"]
    header = "category,skill,definition,example\n"
    a = load_catalog(write_csv(tmp_path, header + "\n".join(rows)))
    b = load_catalog(write_csv(tmp_path, header + "\n".join(reversed(rows))))
    c = load_catalog(
        write_csv(tmp_path, header + "literary,metaphor,d1 changed,e1\nlogical,modus ponens,d2,e2")
    )
    assert a.hash == b.hash != c.hash
