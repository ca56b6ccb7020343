from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import jinja2
import pytest

from skillmix.grading import parse_grade, rubric_items
from skillmix.prompts import (
    COMPLETION_TEMPLATES,
    HASHED,
    TEMPLATES,
    PromptSet,
    grader_prompt,
    round1_prompt,
    round2_prompt,
)
from skillmix.sampling import sample_combinations


@pytest.fixture(scope="module")
def combo(builtin):
    return sample_combinations(builtin, 3, 1, seed=11)[0]


def test_round1_lists_every_skill_with_definition_and_example(combo):
    prompt = round1_prompt(combo.skills, combo.topic)
    assert f'"{combo.topic}"' in prompt and "all three of the following" in prompt
    positions = [prompt.index(f"{i}. {s.name}. {s.definition}") for i, s in enumerate(combo.skills, 1)]
    assert positions == sorted(positions), "skills appear in the sampled (shuffled) order"
    for skill in combo.skills:
        assert skill.example in prompt
    assert "Answer:" in prompt and "Explanation:" in prompt
    assert prompt.index("Answer:") < prompt.index("Explanation:")


def test_round1_single_skill_grammar(builtin):
    skill = builtin.skill("metaphor")
    prompt = round1_prompt([skill], "Sewing")
    assert "the following language skill:" in prompt and "all one" not in prompt


@pytest.mark.parametrize(
    ("k", "phrase"),
    [
        (1, "at most one sentence long"),
        (2, "at most one sentence long"),
        (3, "at most two sentences long"),
        (5, "at most four sentences long"),
        (13, "at most 12 sentences long"),
    ],
)
def test_round2_spells_the_limit(k, phrase):
    prompt = round2_prompt(k, "Knots")
    assert phrase in prompt and '"Knots"' in prompt and "Answer:" in prompt


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_grader_prompt_carries_the_rubric_in_order(combo, fmt):
    answer = "Once upon a thread, the seam confessed."
    prompt = grader_prompt(answer, combo.skills, combo.topic, fmt=fmt)
    items = rubric_items(combo.skills, combo.topic)
    assert len(items) == 6
    positions = [prompt.index(f"- {item}") for item in items]
    assert positions == sorted(positions)
    assert answer in prompt
    if fmt == "table":
        assert "Criteria" in prompt and "Points Earned" in prompt and "Total Points Earned" in prompt
    else:
        assert '"criteria"' in prompt and '"points"' in prompt


def test_a_grader_that_follows_the_prompt_is_parsed(combo):
    items = rubric_items(combo.skills, combo.topic)
    points = [1, 0, 1, 1, 1, 0]
    table = "| Criteria | Points Earned |\n|---|---|\n"
    table += "".join(f"| {item} | {p} |\n" for item, p in zip(items, points, strict=True))
    table += f"| Total Points Earned | {sum(points)} |\n\nExplanation: ..."
    assert parse_grade(table, combo.skills, combo.topic).points == points


def test_conversation_has_both_rounds(combo):
    prompts = PromptSet()
    assert [m["role"] for m in prompts.conversation(combo.skills, combo.topic)] == ["user"]
    full = prompts.conversation(combo.skills, combo.topic, "Answer: a", "Answer: b")
    assert [m["role"] for m in full] == ["user", "assistant", "user", "assistant"]
    assert full[2]["content"] == prompts.round2(3, combo.topic)


def test_hashes_are_stable_and_follow_includes(tmp_path):
    default = PromptSet().hashes()
    assert set(default) == set(HASHED) == set(TEMPLATES) | set(COMPLETION_TEMPLATES)
    # by hand: SHA-256 of a template's bytes, then of the full digest of each template it includes
    folder = PromptSet().template_dir
    own = (folder / "generation_round2.jinja2").read_bytes()
    assert default["generation_round2"] == hashlib.sha256(own).hexdigest()[:16]
    context_digest = hashlib.sha256((folder / "_grader_context.jinja2").read_bytes()).hexdigest()
    table = (folder / "grader_table.jinja2").read_bytes() + context_digest.encode()
    assert default["grader_table"] == hashlib.sha256(table).hexdigest()[:16]
    # the same in another process
    code = "import json; from skillmix.prompts import PromptSet; print(json.dumps(PromptSet().hashes()))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(other.stdout) == default
    copy = tmp_path / "templates"
    shutil.copytree(PromptSet().template_dir, copy)
    assert PromptSet(copy).hashes() == default
    context = copy / "_grader_context.jinja2"
    context.write_text(context.read_text() + "\nBe strict.\n")
    changed = PromptSet(copy).hashes()
    assert changed["grader_table"] != default["grader_table"]
    assert changed["grader_json"] != default["grader_json"]
    assert changed["generation_round1"] == default["generation_round1"]


def test_hashes_cover_the_completion_templates(tmp_path, combo):
    default = PromptSet().hashes()
    folder = PromptSet().template_dir
    assert set(COMPLETION_TEMPLATES) == {
        "completion",
        "completion_example_generation",
        "completion_example_grader_table",
        "completion_example_grader_json",
    }
    for name in COMPLETION_TEMPLATES:
        assert default[name] == hashlib.sha256((folder / f"{name}.jinja2").read_bytes()).hexdigest()[:16]
    # a user folder that changes one worked example: only that key moves, and the prompt a base model gets
    # is the changed one
    copy = tmp_path / "templates"
    shutil.copytree(folder, copy)
    example = copy / "completion_example_generation.jinja2"
    example.write_text(example.read_text() + "\nA second worked example.\n")
    changed = PromptSet(copy).hashes()
    assert [name for name in HASHED if changed[name] != default[name]] == ["completion_example_generation"]
    messages = PromptSet(copy).conversation(combo.skills, combo.topic)
    assert "A second worked example." in PromptSet(copy).plain(messages, "generation")[0]
    # the frame itself
    frame = copy / "completion.jinja2"
    frame.write_text("Continue the last response.\n" + frame.read_text())
    assert PromptSet(copy).hashes()["completion"] != default["completion"]
    assert PromptSet(copy).plain(messages, "generation")[0].startswith("Continue the last response.")


def test_hashes_of_a_partial_folder_use_the_package_files(tmp_path):
    # a folder with only the wording under test: the other templates are rendered and hashed from ours
    default = PromptSet().hashes()
    (tmp_path / "completion.jinja2").write_text("{{ prefix }}")
    partial = PromptSet(tmp_path).hashes()
    assert set(partial) == set(HASHED)
    assert [name for name in HASHED if partial[name] != default[name]] == ["completion"]
    assert partial["completion"] == hashlib.sha256(b"{{ prefix }}").hexdigest()[:16]


def test_missing_variable_is_an_error(tmp_path):
    (tmp_path / "generation_round2.jinja2").write_text("{{ not_given }}")
    with pytest.raises(jinja2.UndefinedError):
        PromptSet(tmp_path).round2(3, "Knots")
    with pytest.raises(ValueError, match="unknown grader format"):
        PromptSet().grader("x", [], "Knots", fmt="xml")


def test_every_hash_is_a_field_of_the_dataset_schema_and_old_rows_still_load(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skillmix.dataset_folder.schema import SCHEMA, write_parquet

    hashes = PromptSet().hashes()
    assert SCHEMA.field("prompt_hashes").type.names == list(HASHED)
    write_parquet([{"id": "new", "prompt_hashes": hashes}], tmp_path / "new.parquet")
    assert pq.read_table(tmp_path / "new.parquet").to_pylist()[0]["prompt_hashes"] == hashes
    # a row written before the completion templates were hashed: read, then written again with this schema
    old = {name: hashes[name] for name in TEMPLATES}
    struct = pa.struct([(name, pa.string()) for name in TEMPLATES])
    table = pa.table({"id": ["old"], "prompt_hashes": pa.array([old], type=struct)})
    pq.write_table(table, tmp_path / "old.parquet")
    rows = pq.read_table(tmp_path / "old.parquet").to_pylist()
    assert rows[0]["prompt_hashes"] == old
    write_parquet(rows, tmp_path / "again.parquet")
    again = pq.read_table(tmp_path / "again.parquet").to_pylist()[0]["prompt_hashes"]
    assert again == {**old, **dict.fromkeys(COMPLETION_TEMPLATES)}
