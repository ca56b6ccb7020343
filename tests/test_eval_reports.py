"""The reports of an evaluation's results.json: the results table, the comparison of runs, the plots, and
the push of results to the loopback Hub (the model card's model-index and a dataset repo of runs), read
back with the real ``huggingface_hub``."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml
from cli_runs import HUB_TOKEN as TOKEN

from skillmix.cli import main
from skillmix.config import ConfigError
from skillmix.evaluation.hub import model_index_results, push_results, update_card
from skillmix.evaluation.pairing import PAIRED
from skillmix.evaluation.plots import plot_results
from skillmix.evaluation.report import compare, render_results_md, write_comparison
from skillmix.evaluation.score import errored_ids, score_samples
from skillmix.metrics import METRICS
from skillmix.rules import ScoringRules

MODEL_REPO = "skillmix-tester/student"
RESULTS_REPO = "skillmix-tester/skillmix-results"
SETTINGS = ("train", "held-out", "all")
RULES = ScoringRules(length_override=True, name_penalty=True, unparseable="zero")  # as make_results records
NAMES = {
    "full_marks": "Ratio of Full Marks",
    "all_skills": "Ratio of All Skills",
    "skill_fraction": "Skill Fraction",
}
PNG = b"\x89PNG\r\n\x1a\n"


def summary(mean: float, stderr: float = 0.04, half_width: float = 0.08) -> dict[str, float]:
    return {"mean": mean, "stderr": stderr, "ci_low": mean - half_width, "ci_high": mean + half_width}


def make_results(
    run_id="run-base",
    model="org/student",
    revision=None,
    judge="gpt-4o",
    generations=3,
    shift=0.0,
    ks=(1, 2, 3),
    settings=SETTINGS,
    eval_set_hash="evalset-1",
) -> dict:
    rows = []
    for setting in settings:
        for k in ks:
            mean = round(0.8 - 0.15 * k - 0.05 * SETTINGS.index(setting) + shift, 4)
            rows.append(
                {
                    "k": k,
                    "setting": setting,
                    "n": 20,
                    "excluded": 0,
                    "full_marks": summary(mean),
                    "all_skills": summary(mean + 0.05),
                    "skill_fraction": summary(mean + 0.1),
                    "unparseable_grades": 0,
                    "failed_generations": 0,
                    "generations": 60,
                }
            )
    return {
        "run_id": run_id,
        "created": "2026-12-01T15:00:00Z",
        "student": {
            "model": model,
            "revision": revision,
            "engine": "vllm",
            "base_url": None,
            "identity": model,
        },
        "judge": {"model": judge, "base_url": "http://judge/v1", "identity": judge},
        "protocol": {
            "generations": generations,
            "grader_runs": 3,
            "name_penalty": True,
            "length_override": True,
            "grader_format": "table",
            "seed": 0,
            "eval_set": "org/data@v1.0.0",
            "eval_set_hash": eval_set_hash,
            "judge": {"model": judge, "temperature": 0.7, "grader_runs": 3},
            "prompt_hashes": {"round1": "a", "round2": "b", "grader": "c"},
        },
        "results": rows,
        "cost_usd": 1.23,
    }


def table(markdown: str) -> list[list[str]]:
    """The cells of the first Markdown table, header first, separator dropped."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows if not set("".join(row)) <= set("-")]


def cell(mean: float, stderr: float = 0.04) -> str:
    return f"{mean:.2f} ± {stderr:.2f}"


# ---------------------------------------------------------------------- results.md


def test_results_md_is_the_papers_table_with_a_header_and_issue_lines():
    results = make_results(revision="abc123", settings=("held-out", "train"))  # any order in the file
    results["results"] = [r for r in results["results"] if not (r["k"] == 2 and r["setting"] == "train")]
    bad = next(r for r in results["results"] if r["k"] == 3 and r["setting"] == "held-out")
    bad.update(unparseable_grades=4, failed_generations=2)
    markdown = render_results_md(results)

    header, *rows = table(markdown)
    columns = [f"{s}: {NAMES[m]}" for s in ("train", "held-out") for m in METRICS]
    assert header == ["k", *columns]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    expected = {
        (r["k"], r["setting"], m): cell(r[m]["mean"], r[m]["stderr"])
        for r in results["results"]
        for m in METRICS
    }
    for row in rows:
        for column, value in zip(columns, row[1:], strict=True):
            setting, name = column.split(": ")
            metric = next(m for m in METRICS if NAMES[m] == name)
            assert value == expected.get((int(row[0]), setting, metric), "—")
    assert rows[1][1:4] == ["—", "—", "—"] and rows[0][1] == "0.65 ± 0.04"
    head = markdown.split("| k |")[0]
    for text in (
        "`org/student`",
        "revision `abc123`",
        "engine vllm",
        "`gpt-4o`",
        "3 generations",
        "3 grader runs",
        "name penalty on",
        "`run-base`",
    ):
        assert text in head, text
    assert "- k=3 held-out: 4 unparseable grades, 2 failed generations (of 60 generations)" in markdown
    assert "k=1" not in markdown.split("| k |")[1].split("\n\n", 1)[1]  # no line for clean cells

    clean = render_results_md(make_results())
    assert "unparseable" not in clean and "failed" not in clean and "n = 20 per cell" in clean


def test_results_md_survives_null_values():
    results = make_results(ks=(1,), settings=("all",))
    results["results"][0]["full_marks"] = {"mean": None, "stderr": None, "ci_low": None, "ci_high": None}
    results["results"][0]["all_skills"]["stderr"] = None
    _, row = table(render_results_md(results))
    assert row == ["1", "—", "0.60 ± n/a", cell(0.65)]


def test_results_md_lists_errored_and_ungraded_generations():
    results = make_results(ks=(2,), settings=("held-out", "train"))
    results["protocol"]["unparseable"] = "drop"
    row = next(r for r in results["results"] if r["setting"] == "held-out")
    row.update(errored_generations=3, ungraded_generations=2, unparseable_grades=6)
    results["errored"] = [f"held-out:c{i}:g0" for i in range(3)]
    markdown = render_results_md(results)
    assert (
        "- k=2 held-out: 6 unparseable grades, 2 ungraded generations (no grader run parsed), "
        "3 errored generations (the infrastructure stopped them: left out) (of 60 generations)"
    ) in markdown
    assert "- Ungraded generations are left out of the metrics (`unparseable: drop`)." in markdown
    assert (
        "- Errored generations, left out of the metrics (the same `skillmix eval` command again retries "
        "them): `held-out:c0:g0`, `held-out:c1:g0`, `held-out:c2:g0`\n"
    ) in markdown
    assert "ungraded generations left out of the metrics" in markdown.split("| k |")[0]  # the protocol line
    assert "k=2 train" not in markdown

    results["errored"] = [f"held-out:c{i}:g0" for i in range(25)]
    line = next(x for x in render_results_md(results).splitlines() if x.startswith("- Errored"))
    assert line.count("`held-out:") == 20 and line.endswith("and 5 more (results.json lists all)")
    results["protocol"]["unparseable"] = "zero"
    assert "- Ungraded generations are scored 0 (`unparseable: zero`)." in render_results_md(results)
    assert "rrored" not in render_results_md(make_results())  # nothing to say: no line


# ---------------------------------------------------------------------- compare


def test_compare_puts_runs_side_by_side_and_pairs_nothing_without_samples():
    base = make_results("run-base", ks=(1, 2, 3))
    tuned = make_results("run-ft", revision="ft1", shift=0.3, ks=(2, 3, 4))
    tuned["protocol"]["seed"] = 1
    markdown, data = compare([("base", base), ("ft", tuned)])

    assert data["baseline"] == "org/student" and [r["label"] for r in data["runs"]] == [
        "org/student",
        "org/student@ft1",
    ]
    rows = {(r["k"], r["setting"], r["metric"]): r for r in data["rows"]}
    assert len(rows) == 4 * 3 * 3
    far = rows[(3, "train", "full_marks")]
    assert far["values"]["org/student@ft1"]["mean"] == pytest.approx(0.65)
    assert far["vs_baseline"]["org/student@ft1"] == dict.fromkeys(PAIRED)  # no samples: no pairs
    only_base, only_tuned = rows[(1, "all", "skill_fraction")], rows[(4, "train", "all_skills")]
    assert only_base["values"]["org/student@ft1"] is None and only_tuned["values"]["org/student"] is None
    assert data["allowed_differences"] == {} and data["protocol"]["eval_set"] == "evalset-1"

    assert "3 generations per combination" in markdown and "differs between the runs: seed" in markdown
    section = markdown.split("## Ratio of Full Marks")[1].split("##")[0]
    header, *lines = table(section)
    assert header == [
        "k",
        "setting",
        "org/student",
        "org/student@ft1",
        "Δ org/student@ft1 [95% CI]",
        "p org/student@ft1",
        "n org/student@ft1",
    ]
    by_key = {(line[0], line[1]): line[2:] for line in lines}
    assert by_key[("3", "train")] == [cell(0.35), cell(0.65), "—", "—", "—"]
    assert by_key[("1", "train")] == [cell(0.65), "—", "—", "—", "—"] and by_key[("4", "all")][0] == "—"
    assert [key[0] for key in by_key] == sorted(key[0] for key in by_key)
    assert "overlap" not in markdown and "separate" not in markdown  # intervals decide nothing
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_compare_labels_are_unique_and_mismatched_protocols_are_refused():
    _, data = compare([("base", make_results()), ("again", make_results("run-2"))])
    assert [r["label"] for r in data["runs"]] == ["org/student (base)", "org/student (again)"]
    _, data = compare([("x", make_results()), ("x", make_results("run-2"))])
    assert [r["label"] for r in data["runs"]] == ["org/student (x) #1", "org/student (x) #2"]

    odd = make_results("run-3", generations=5)
    odd["protocol"]["name_penalty"] = False
    with pytest.raises(ConfigError) as refused:
        compare([("base", make_results()), ("ft", make_results("run-2")), ("odd", odd)])
    message = str(refused.value)
    assert "\n" not in message and "generations differs (3 in base, ft; 5 in odd)" in message
    assert "name_penalty differs (true in base, ft; false in odd)" in message
    assert "grader_runs" not in message and "judge" not in message
    assert message.endswith(
        "--allow-different generations --allow-different name_penalty compares them anyway"
    )
    with pytest.raises(ValueError, match="no runs"):
        compare([])
    unknown = r"--allow-different judges: not a protocol field \(choose from judge, judge_temperature, "
    with pytest.raises(ConfigError, match=unknown):
        compare([("base", make_results()), ("ft", make_results("run-2"))], allow=["judges"])


def refused_field(base: dict, other: dict, allow: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as refused:
        compare([("base", base), ("ft", other)], allow=allow)
    return str(refused.value)


def test_each_protocol_field_is_refused_by_name_and_older_layouts_are_read():
    def changed(**protocol) -> dict:
        results = make_results("run-2")
        results["protocol"].update(protocol)
        return results

    assert "grader_runs differs (3 in base; 1 in ft)" in refused_field(make_results(), changed(grader_runs=1))
    off = changed(length_override=False)
    assert "length_override differs (true in base; false in ft)" in refused_field(make_results(), off)
    drop = changed(unparseable="drop")
    assert "unparseable differs (zero in base; drop in ft)" in refused_field(make_results(), drop)
    compare([("base", make_results()), ("ft", changed(unparseable="zero"))])  # absent is zero, the old rule
    cold = changed(judge={"model": "gpt-4o", "temperature": 0.0})
    assert "judge_temperature differs (0.7 in base; 0.0 in ft)" in refused_field(make_results(), cold)
    older = changed(judge_sampling={"temperature": 0.0})  # the older layout: no protocol.judge
    del older["protocol"]["judge"]
    assert "judge_temperature differs (0.7 in base; 0.0 in ft)" in refused_field(make_results(), older)
    other = make_results("run-2", judge="claude-3-opus")
    assert "judge differs (gpt-4o in base; claude-3-opus in ft)" in refused_field(make_results(), other)
    pinned = make_results("run-2")
    pinned["judge"]["identity"] = "gpt-4o-2024-08-06"  # the identity is what the judge was
    assert "judge differs (gpt-4o in base; gpt-4o-2024-08-06 in ft)" in refused_field(make_results(), pinned)


def test_a_run_without_an_eval_set_hash_cannot_show_it_asked_the_same_questions():
    other = make_results("run-2", eval_set_hash="evalset-2")
    message = refused_field(make_results(), other)
    assert "eval_set differs (evalset-1 in base; evalset-2 in ft)" in message
    assert message.endswith("--allow-different eval_set compares them anyway")
    # not recorded (a results.json from before the hash) differs from a hash, and from another unrecorded one
    unrecorded = make_results("run-2", eval_set_hash=None)
    assert "eval_set differs (evalset-1 in base; not recorded in ft)" in refused_field(
        make_results(), unrecorded
    )
    both = make_results(eval_set_hash=None)
    assert "eval_set differs (not recorded in base, ft)" in refused_field(both, unrecorded)
    markdown, data = compare([("base", both), ("ft", unrecorded)], allow=["eval_set"])
    assert data["allowed_differences"] == {"eval_set": {"org/student (base)": None, "org/student (ft)": None}}
    assert (
        "- Compared although eval_set differs (`--allow-different eval_set`): not recorded in "
        "org/student (base); not recorded in org/student (ft)"
    ) in markdown
    compare([("only", both)])  # one run: nothing to differ from


# ---------------------------------------------------------------------- paired, from samples.jsonl

FULL, MISS = [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]  # full marks; no full marks, skill fraction 1/2


def sample(setting: str, combo: str, points: list | None, status: str = "ok") -> dict:
    """One generation (g0) of a k=2 combination, graded 3 times alike (``points``)."""
    graded = status == "ok"
    return {
        "id": f"{setting}:{combo}:g0",
        "setting": setting,
        "k": 2,
        "combination": combo,
        "generation": 0,
        "skills": ["a", "b"],
        "answer": "One short line." if graded else None,
        "round1_status": status,
        "round2_status": status,
        "grader_points": [points] * 3 if graded else [],
        "grader_status": ["ok"] * 3 if graded else [],
    }


def compared_folder(path: Path, samples: list[dict], **kwargs) -> Path:
    """An evaluation folder as `skillmix eval` leaves it: results.json scored from samples.jsonl."""
    results = make_results(generations=1, **kwargs)
    results["results"] = score_samples(samples, 3, 1, RULES)
    results["errored"] = errored_ids(samples)
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(results))
    (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def paired_runs(tmp_path: Path, judge: str = "gpt-4o", eval_set_hash: str = "evalset-1") -> tuple[Path, Path]:
    """Held-out: c0-c2 improve from MISS to FULL, c3 stays FULL, c4 errored in the tuned run (not paired),
    c5 only in the tuned run (not paired). Train: t0-t5 all improve."""
    base = [sample("held-out", f"c{i}", MISS) for i in range(3)] + [
        sample("held-out", "c3", FULL),
        sample("held-out", "c4", FULL),
    ]
    tuned = [sample("held-out", f"c{i}", FULL) for i in range(4)] + [
        sample("held-out", "c4", None, status="api_error"),
        sample("held-out", "c5", FULL),
    ]
    base += [sample("train", f"t{i}", MISS) for i in range(6)]
    tuned += [sample("train", f"t{i}", FULL) for i in range(6)]
    return (
        compared_folder(tmp_path / "base", base),
        compared_folder(tmp_path / "ft", tuned, revision="ft1", judge=judge, eval_set_hash=eval_set_hash),
    )


def test_compare_pairs_the_combinations_both_runs_scored(tmp_path):
    out = tmp_path / "cmp"
    write_comparison(list(paired_runs(tmp_path)), out)
    data = json.loads((out / "comparison.json").read_text())
    rows = {(r["k"], r["setting"], r["metric"]): r["vs_baseline"]["org/student@ft1"] for r in data["rows"]}
    # held-out, full marks: pairs c0-c3, differences [1, 1, 1, 0] (c4 errored in ft, c5 only in ft).
    # p: of the 2**3 sign patterns of the three nonzero differences only +++ and --- reach |sum| 3: 2/8.
    # interval: a resample's mean is (ones drawn)/4, ones ~ Binomial(4, 3/4): P(0) = 1/256 < 2.5% <
    # P(<= 1) = 13/256, and P(4) = 81/256 > 2.5%, so the 2.5% and 97.5% points are 0.25 and 1.0.
    held_out = rows[(2, "held-out", "full_marks")]
    assert (held_out["n"], held_out["difference"], held_out["ci_low"], held_out["ci_high"]) == (
        4,
        0.75,
        0.25,
        1.0,
    )
    assert (held_out["p"], held_out["p_method"], held_out["significant"]) == (2 / 8, "exact", False)
    # skill fraction: differences [0.5, 0.5, 0.5, 0], the same patterns, halved
    fraction = rows[(2, "held-out", "skill_fraction")]
    assert (fraction["n"], fraction["difference"], fraction["ci_low"], fraction["ci_high"]) == (
        4,
        0.375,
        0.125,
        0.5,
    )
    assert fraction["p"] == 2 / 8
    # train: six differences of 1, every resample's mean is 1, and only +...+ and -...- of 2**6 reach 6
    train = rows[(2, "train", "full_marks")]
    assert (train["n"], train["difference"], train["ci_low"], train["ci_high"]) == (6, 1.0, 1.0, 1.0)
    assert (train["p"], train["p_method"], train["significant"]) == (2 / 64, "exact", True)
    assert (
        data["statistics"]["interval"]["n_resamples"] == 1000 and data["statistics"]["interval"]["seed"] == 0
    )
    assert data["statistics"]["p"]["exact_up_to"] == 16

    markdown = (out / "comparison.md").read_text()
    section = markdown.split("## Ratio of Full Marks")[1].split("##")[0]
    _, *lines = table(section)
    by_key = {(line[0], line[1]): line[2:] for line in lines}
    assert by_key[("2", "train")][2:] == ["+1.00* [+1.00, +1.00]", "0.031", "6"]
    assert by_key[("2", "held-out")] == [
        cell(0.4, 0.24),
        cell(1.0, 0.0),
        "+0.75 [+0.25, +1.00]",
        "0.250",
        "4",
    ]
    assert "1000 resamples of those combinations, seed 0" in markdown and "* marks p < 0.05" in markdown


def test_identical_runs_differ_by_nothing(tmp_path):
    base, _ = paired_runs(tmp_path)
    results = json.loads((base / "results.json").read_text())
    samples = [json.loads(line) for line in (base / "samples.jsonl").read_text().splitlines()]
    markdown, data = compare([("a", results), ("a", results)], samples=[samples, samples])
    for row in data["rows"]:
        versus = next(iter(row["vs_baseline"].values()))
        assert (versus["difference"], versus["ci_low"], versus["ci_high"], versus["p"]) == (0, 0, 0, 1)
    assert "+0.00 [+0.00, +0.00] | 1.000 | 5 |" in markdown


def test_many_differences_are_tested_by_random_sign_patterns():
    base = [sample("train", f"t{i}", MISS) for i in range(20)]
    tuned = [sample("train", f"t{i}", FULL) for i in range(20)]
    runs = []
    for name, samples in (("base", base), ("ft", tuned)):
        results = make_results(f"run-{name}", generations=1)
        results["results"] = score_samples(samples, 3, 1, RULES)
        runs.append((name, results))
    markdown, data = compare(runs, samples=[base, tuned])
    versus = next(iter(data["rows"][0]["vs_baseline"].values()))
    # 20 nonzero differences > 16: 10000 random patterns (seed 0), none as extreme as all +1 (exact p is
    # 2 / 2**20), so p = (0 + 1) / (10000 + 1)
    assert (versus["n"], versus["p_method"], versus["p"]) == (20, "monte-carlo", 1 / 10001)
    assert versus["significant"] and "| +1.00* [+1.00, +1.00] | <0.001 (MC) | 20 |" in markdown


def run_compare(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", "compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_compare_refuses_different_judges_unless_allowed(tmp_path, capsys):
    base, tuned = paired_runs(tmp_path, judge="claude-3-opus")
    out = tmp_path / "cmp"
    code, _, err = run_compare(capsys, str(base), str(tuned), "--out", str(out))
    assert code == 2 and not out.exists()
    assert err.splitlines() == [
        "skillmix: error: cannot compare runs of different protocols: judge differs (gpt-4o in base; "
        "claude-3-opus in ft); --allow-different judge compares them anyway"
    ]
    code, printed, _ = run_compare(
        capsys, str(base), str(tuned), "--out", str(out), "--allow-different", "judge"
    )
    assert code == 0
    markdown = (out / "comparison.md").read_text()
    assert printed.strip() == markdown.strip()
    assert (
        "- Compared although judge differs (`--allow-different judge`): gpt-4o in org/student; "
        "claude-3-opus in org/student@ft1"
    ) in markdown
    data = json.loads((out / "comparison.json").read_text())
    assert data["allowed_differences"] == {
        "judge": {"org/student": "gpt-4o", "org/student@ft1": "claude-3-opus"}
    }


def test_eval_compare_refuses_different_eval_sets(tmp_path, capsys):
    base, tuned = paired_runs(tmp_path, eval_set_hash="evalset-2")
    out = tmp_path / "cmp"
    code, _, err = run_compare(capsys, str(base), str(tuned), "--out", str(out), "--allow-different", "judge")
    assert code == 2 and not out.exists() and len(err.splitlines()) == 1
    assert "eval_set differs (evalset-1 in base; evalset-2 in ft)" in err and "judge" not in err
    code, _, err = run_compare(
        capsys, str(base), str(tuned), "--out", str(out), "--allow-different", "nonsense"
    )
    assert code == 2 and "--allow-different nonsense: not a protocol field" in err and not out.exists()


def test_write_comparison_writes_markdown_json_and_plots(tmp_path):
    base, tuned = paired_runs(tmp_path)
    out = tmp_path / "cmp"
    write_comparison([base, tuned], out)
    assert sorted(p.name for p in out.iterdir()) == ["comparison.json", "comparison.md", "plots"]
    data = json.loads((out / "comparison.json").read_text())
    assert [r["folder"] for r in data["runs"]] == [str(base), str(tuned)]
    assert "org/student@ft1" in (out / "comparison.md").read_text()
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(f"{m}.png" for m in METRICS)

    (tmp_path / "empty").mkdir()
    elsewhere = tmp_path / "refused"
    with pytest.raises(ValueError, match=r"no results\.json in .*empty") as refused:
        write_comparison([base, tmp_path / "empty"], elsewhere)
    assert "\n" not in str(refused.value) and not elsewhere.exists()
    (tmp_path / "bare").mkdir()  # results without samples: nothing to pair
    (tmp_path / "bare" / "results.json").write_text((base / "results.json").read_text())
    with pytest.raises(ValueError, match=r"bare holds no samples\.jsonl"):
        write_comparison([base, tmp_path / "bare"], elsewhere)
    assert not elsewhere.exists()
    odd = make_results("run-odd", generations=3)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "results.json").write_text(json.dumps(odd))
    with pytest.raises(
        ConfigError, match=r"different protocols: generations differs \(1 in base; 3 in odd\)"
    ):
        write_comparison([base, tmp_path / "odd"], elsewhere)
    assert not elsewhere.exists()


# ---------------------------------------------------------------------- plots


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_one_png_per_metric_one_panel_per_setting(tmp_path):
    one = plot_results([("org/student", make_results(settings=("held-out",)))], tmp_path / "one")
    assert one == [tmp_path / "one" / f"{m}.png" for m in METRICS]
    three = plot_results(
        [("base", make_results()), ("ft", make_results(shift=0.1, ks=(2, 5)))], tmp_path / "three"
    )
    widths = {png_size(path)[0] for path in one}, {png_size(path)[0] for path in three}
    assert widths == ({400}, {1080})  # 3.6 inches (at least 4) per panel, at 100 dpi
    again = plot_results(
        [("base", make_results()), ("ft", make_results(shift=0.1, ks=(2, 5)))], tmp_path / "again"
    )
    assert [p.read_bytes() for p in three] == [p.read_bytes() for p in again]  # deterministic bytes


# ---------------------------------------------------------------------- the model card, offline


CARD_HEAD = "---\nlicense: apache-2.0\n# a comment the card keeps\ntags: [skill-mix, sft]\n"
OTHER_RESULT = {
    "task": {"type": "text-generation"},
    "dataset": {"name": "GSM8K", "type": "gsm8k"},
    "metrics": [{"type": "accuracy", "value": 0.5}],
}
CARD_INDEX = yaml.safe_dump(
    {"model-index": [{"name": "student", "results": [OTHER_RESULT]}]}, sort_keys=False
)
CARD_TAIL = (
    "\n# trailing comment\nbase_model: 'org/base'\n---\n# Student\n\nText with --- and model-index: inside.\n"
)


def test_update_card_touches_only_the_model_index():
    new = model_index_results(make_results())
    card = CARD_HEAD + CARD_INDEX + CARD_TAIL
    updated = update_card(card, new, "student")
    assert updated.startswith(CARD_HEAD) and updated.endswith(CARD_TAIL)
    index = yaml.safe_load(updated.split("---\n")[1])["model-index"]
    assert index[0]["results"] == [OTHER_RESULT, *new]
    assert update_card(updated, new, "student") == updated  # the same run again: nothing changes

    crlf = card.replace("\n", "\r\n")
    updated = update_card(crlf, new, "student")
    assert updated.startswith(CARD_HEAD.replace("\n", "\r\n")) and "\n" not in updated.replace("\r\n", "")
    bare = update_card("# Student\n\nNo metadata.\n", new, "student")
    assert bare.endswith("---\n# Student\n\nNo metadata.\n") and "model-index:" in bare
    with pytest.raises(ValueError, match="does not parse"):
        update_card("---\nkey: [unclosed\n---\ntext\n", new, "student")


# ---------------------------------------------------------------------- the loopback Hub


@pytest.fixture
def clients(hub, tmp_path, monkeypatch):
    """This process's huggingface_hub pointed at the test's ``hub`` (conftest)."""
    hub.configure_clients(monkeypatch, tmp_path / "hf-home")


def eval_folder(path: Path, results: dict) -> Path:
    (path / "plots").mkdir(parents=True)
    (path / ".skillmix").mkdir()
    (path / ".skillmix" / "cache.sqlite").write_bytes(b"SQLite format 3\x00 work files stay local")
    (path / "results.json").write_text(json.dumps(results))
    (path / "results.md").write_text(render_results_md(results))
    plot_results([(results["student"]["model"], results)], path / "plots")
    return path


def skillmix_results(repo: str) -> tuple[list, list]:
    """(this tool's eval_results, the others) of the repo's card, read by huggingface_hub."""
    from huggingface_hub import ModelCard

    results = ModelCard.load(repo, token=TOKEN).data.eval_results
    ours = [
        r for r in results if r.dataset_type == "skillmix" and (r.dataset_args or {}).get("judge") == "gpt-4o"
    ]
    return ours, [r for r in results if r not in ours]


def check_card_results(ours: list, results: dict) -> None:
    expected = {(f"{r['setting']}-k{r['k']}", m): r[m]["mean"] for r in results["results"] for m in METRICS}
    assert {(r.dataset_config, r.metric_type): r.metric_value for r in ours} == expected
    assert len(ours) == len(expected)  # no duplicates
    for r in ours:
        setting, k = r.dataset_config.rsplit("-k", 1)
        assert (r.task_type, r.task_name) == ("text-generation", "Skill-Mix")
        assert r.dataset_name == f"Skill-Mix {setting} (k={k})" and r.metric_name == NAMES[r.metric_type]


def test_push_results_updates_the_card_and_uploads_the_run(hub, clients, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo(MODEL_REPO)
    other_judge = model_index_results(make_results("run-old", judge="claude"))[:1]
    index = yaml.safe_dump({"model-index": [{"name": "student", "results": [OTHER_RESULT, *other_judge]}]})
    card = CARD_HEAD + index + CARD_TAIL
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=MODEL_REPO)
    results = make_results("3f2a9c", revision="abc123")
    folder = eval_folder(tmp_path / "eval", results)

    first = push_results(folder, MODEL_REPO, RESULTS_REPO, token=TOKEN)
    readme = hub.uploaded_files(MODEL_REPO, repo_type="model")["README.md"].decode()
    assert readme.startswith(CARD_HEAD) and readme.endswith(CARD_TAIL)
    ours, others = skillmix_results(MODEL_REPO)
    check_card_results(ours, results)
    assert [(r.dataset_type, r.metric_type) for r in others] == [("gsm8k", "accuracy")] + [
        ("skillmix", metric) for metric in METRICS
    ]  # another tool's result and another judge's stay
    assert first["model_index_entries"] == 27 and first["model_commit_url"].endswith(first["model_commit"])

    commits = hub.commits(RESULTS_REPO)
    assert [c["title"] for c in commits] == ["Skill-Mix evaluation run 3f2a9c", "initial commit"]
    uploaded = hub.uploaded_files(RESULTS_REPO)
    local = {
        f"runs/3f2a9c/{p.relative_to(folder).as_posix()}": p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and ".skillmix" not in p.parts
    }
    assert {p: b for p, b in uploaded.items() if p.startswith("runs/")} == local and len(local) == 5
    assert hub.refs(RESULTS_REPO)["tags"] == {"3f2a9c": commits[0]["id"]} and not hub.is_private(RESULTS_REPO)
    assert first["results_commit"] == commits[0]["id"] and first["tag"] == "3f2a9c"

    second = push_results(folder, MODEL_REPO, RESULTS_REPO, token=TOKEN)  # the same run again
    assert second["model_commit"] == first["model_commit"] and len(hub.commits(RESULTS_REPO)) == 2
    assert second["model_commit_url"] is None and second["results_commit"] == first["results_commit"]
    assert hub.uploaded_files(MODEL_REPO, repo_type="model")["README.md"].decode() == readme
    (folder / "results.md").write_text(render_results_md(results) + "\nNotes.\n")  # the run changed
    third = push_results(folder, MODEL_REPO, RESULTS_REPO, token=TOKEN)
    head = hub.commits(RESULTS_REPO)[0]["id"]
    assert third["results_commit"] == head and hub.refs(RESULTS_REPO)["tags"] == {"3f2a9c": head}

    rerun = make_results("77b0e1", revision="abc124", shift=0.05, ks=(2, 3, 4))  # same judge and protocol
    push_results(eval_folder(tmp_path / "rerun", rerun), MODEL_REPO, RESULTS_REPO, token=TOKEN)
    ours, others = skillmix_results(MODEL_REPO)
    latest = {(r.dataset_config, r.metric_type): r.metric_value for r in ours}
    assert latest[("train-k1", "full_marks")] == 0.65 and latest[("train-k2", "full_marks")] == 0.55
    assert len(ours) == 4 * 3 * 3 and len(others) == 4
    readme = hub.uploaded_files(MODEL_REPO, repo_type="model")["README.md"].decode()
    assert readme.startswith(CARD_HEAD) and readme.endswith(CARD_TAIL)
    assert sorted(hub.refs(RESULTS_REPO)["tags"]) == ["3f2a9c", "77b0e1"]


def test_push_results_to_a_repo_without_a_card(hub, clients, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo(MODEL_REPO)
    results = make_results("c0ffee", ks=(3,), settings=("held-out",))
    out = push_results(eval_folder(tmp_path / "eval", results), MODEL_REPO, None, token=TOKEN)
    assert set(out) == {"run_id", "model_repo", "model_commit", "model_commit_url", "model_index_entries"}
    ours, others = skillmix_results(MODEL_REPO)
    assert others == []
    check_card_results(ours, results)
    with pytest.raises(ValueError, match="skillmix-tester/missing does not exist"):
        push_results(tmp_path / "eval", "skillmix-tester/missing", None, token=TOKEN)
    broken = b"---\nlicense: [unclosed\n---\ntext\n"
    api.upload_file(path_or_fileobj=broken, path_in_repo="README.md", repo_id=MODEL_REPO)
    with pytest.raises(ValueError, match="does not parse"):
        push_results(tmp_path / "eval", MODEL_REPO, RESULTS_REPO, token=TOKEN)
    assert not hub.repo_exists(RESULTS_REPO)  # refused before anything was pushed
