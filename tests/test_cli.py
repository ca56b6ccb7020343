from __future__ import annotations

import json

from skillmix.cli import main


def test_catalog_split_prints_sizes_and_hashes(builtin, capsys):
    assert main(["catalog", "--split"]) == 0
    out = capsys.readouterr().out
    split = builtin.split(0)
    assert "skills  53 training / 48 held-out" in out
    assert "topics  50 training / 50 held-out" in out
    for h in (split.skills_hash, split.topics_hash, split.hash):
        assert h in out
    assert "metaphor" in out and "The Ottoman Empire" in out


def test_catalog_split_json(builtin, capsys):
    assert main(["catalog", "--split", "--seed", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hash"] == builtin.split(3).hash and len(data["heldout_skills"]) == 48


def test_catalog_summary(capsys):
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    assert "101 skills, 100 topics" in out and "literary" in out


def test_sample_jsonl_and_usage_report(capsys):
    assert main(["sample", "--k", "3", "--n", "20", "--jsonl"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == 20 and all(len(r["skills"]) == 3 for r in rows)
    assert "skill usage min" in captured.err and "ratio" in captured.err


def test_prompts_command(capsys):
    assert main(["prompts", "--k", "2", "--grader", "json"]) == 0
    out = capsys.readouterr().out
    assert "=== round 1" in out and "at most one sentence" in out and '"criteria"' in out


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["catalog", "--catalog", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"skillmix: error: {tmp_path / 'missing.csv'}: no such catalog file"
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("category,skill,definition\nliterary,metaphor,d\n")
    assert main(["catalog", "--split", "--catalog", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "missing column 'example'" in err
    assert main(["sample", "--k", "60", "--n", "3"]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and "k=60 exceeds the 53 skills" in captured.err
    assert captured.out == ""
