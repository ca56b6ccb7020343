"""The train and all evaluation sets never ask what the dataset drew: drawn from the combinations its draw
(every round, --target-accepted included) does not hold, in `skillmix eval --data`, `skillmix publish` and
the training-time leakage check alike; recorded by hash; fewer than n left is refused with the numbers."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_runs import dataset_cmd, run_here

from skillmix.catalog import load_catalog
from skillmix.dataset_folder.layout import read_dataset_folder
from skillmix.release.evalsets import draw_eval_set, exclusion_record
from skillmix.sampling import SamplingError
from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder


@pytest.fixture
def small_catalog(tmp_path):
    """8 training skills and 4 topics (2 training): 56 training combinations of k = 2, as a user's."""
    skills = [{"name": f"{kind} {i}", "category": kind, "definition": f"definition {i}", "example": f"ex {i}"}
              for kind in ("literary", "logical") for i in range(8)]  # fmt: skip
    for i, skill in enumerate(skills[:8]):
        skill["category"] = "literary" if i % 2 else "rhetorical"
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"skills": skills, "topics": ["Sewing", "Knots", "Tides", "Bees"]}))
    return path


def test_draw_eval_set_skips_the_drawn_and_refuses_with_the_numbers(small_catalog):
    catalog = load_catalog(small_catalog)
    split = catalog.split(0)
    plain = draw_eval_set(catalog, split, 2, "train", 56, seed=0)
    assert len(plain) == 56  # every training combination of k = 2
    drawn = frozenset(c.key for c in plain[:20])
    kept = draw_eval_set(catalog, split, 2, "train", 30, seed=0, exclude=drawn)
    assert len({c.key for c in kept}) == 30 and not {c.key for c in kept} & drawn
    assert kept == draw_eval_set(catalog, split, 2, "train", 30, seed=0, exclude=drawn)  # seeded
    left = r"56 combinations at k=2 and the dataset drew 20 of them: 36 are left, fewer than the 40"
    with pytest.raises(SamplingError, match=left):
        draw_eval_set(catalog, split, 2, "train", 40, seed=0, exclude=drawn)
    heldout = draw_eval_set(catalog, split, 2, "held-out", 5)
    assert draw_eval_set(catalog, split, 2, "held-out", 5, 0, drawn) == heldout  # nothing of it was drawn


def test_an_evaluation_on_a_target_accepted_dataset_asks_nothing_it_drew(small_catalog, tmp_path):
    data, out = tmp_path / "data", tmp_path / "eval"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=4, accept_rate=0.5)) as server:
        built = run_here(dataset_cmd(server, data, "--catalog", str(small_catalog), "--k", "2",
                                     "--target-accepted", "8"))  # fmt: skip
        assert built.returncode == 0, built.stderr[-3000:]
        folder = read_dataset_folder(data)
        drawn = folder.drawn_keys()
        manifest = folder.manifest
        assert manifest["counts"]["per_k"]["k2"]["sampled"] == len(drawn) > 8  # every row it drew
        roles = ["--student-model", "fake-teacher", "--student-base-url", server.base_url,
                 "--judge-model", "fake-teacher", "--judge-base-url", server.base_url]  # fmt: skip
        done = run_here(["eval", "--data", str(data), "--out", str(out), "--setting", "train,all", "--k", "2",
                         "--n", "8", "--generations", "1", *roles])  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    asked = {(frozenset(s["skills"]), s["topic"]) for s in samples}
    assert len({s["combination"] for s in samples}) == 16 and not asked & drawn  # none it trained on
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["excluded"] == {"dataset": str(data), **exclusion_record(drawn)}
    # the training-time leakage check rebuilds exactly these sets (the same exclusion, seed, k and n)
    from skillmix.training.config import DataConfig
    from skillmix.training.data import load_sources
    from skillmix.training.leakage import _eval_rows, split_of

    evaluation = {"settings": ["train", "all"], "n": 8, "k": [2]}
    (item,) = load_sources(
        DataConfig(datasets=[{"path": str(data), "configs": ["k2"]}], evaluation=evaluation)
    )
    split, catalog = split_of(item)
    rows = _eval_rows(
        item, catalog, split, DataConfig(datasets=[{"path": str(data)}], evaluation=evaluation).evaluation
    )
    rebuilt = {(r["setting"], r["id"]) for r in rows if r["setting"] != "held-out"}
    assert rebuilt == {(s["setting"], s["combination"]) for s in samples}


def test_the_training_leakage_check_refuses_a_set_that_leaks():
    from skillmix.training.leakage import _combination_check

    training = [{"id": "k2-a", "skills": ["metaphor", "irony"], "topic": "Knots"}]
    leaking = [{"id": "e1", "setting": "train", "skills": ["irony", "metaphor"], "topic": "Knots"}]
    check = _combination_check(training, leaking, ["train"])
    assert check.violations == ["k2-a (= e1)"]
    assert not _combination_check(training, [{**leaking[0], "topic": "Tides"}], ["train"]).violations
