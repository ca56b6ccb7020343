"""The Skill-Mix(k) evaluation prompt sets: settings train, held-out and all, for k = 2..5.

Each row is one (k skills, topic) combination with the prompts a student is given (round 1 and round 2)
and no answer, so that anyone can run the same evaluation: ``id, setting, k, skills, categories, topic,
prompt, round2_prompt``. Sets are drawn with :func:`skillmix.sampling.sample_combinations` (balanced,
seeded, distinct) under the release's split.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skillmix.catalog import Catalog
from skillmix.prompts import PromptSet
from skillmix.sampling import Combination, SamplingError, count_combinations, eligible, sample_combinations
from skillmix.splits import Split

EVAL_SETTINGS: tuple[str, ...] = ("train", "held-out", "all")
EVAL_KS: tuple[int, ...] = (2, 3, 4, 5)


def eval_config_name(setting: str) -> str:
    return f"eval-{setting}"


def build_eval_sets(
    catalog: Catalog,
    split: Split,
    n: int = 100,
    ks: Iterable[int] = EVAL_KS,
    settings: Iterable[str] = EVAL_SETTINGS,
    seed: int = 0,
    prompts: PromptSet | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{"eval-train": rows, "eval-held-out": rows, "eval-all": rows}``, ``n`` combinations per k."""
    prompts = prompts or PromptSet()
    out: dict[str, list[dict[str, Any]]] = {}
    for setting in settings:
        rows = []
        for k in ks:
            for combo in draw_eval_set(catalog, split, k, setting, n, seed):
                rows.append(
                    {
                        **combo.to_dict(),
                        "prompt": prompts.round1(combo.skills, combo.topic),
                        "round2_prompt": prompts.round2(combo.k, combo.topic),
                    }
                )
        out[eval_config_name(setting)] = rows
    return out


def draw_eval_set(
    catalog: Catalog, split: Split, k: int, setting: str, n: int, seed: int = 0
) -> list[Combination]:
    """The ``n`` (at most: all there are) combinations of ``setting`` and ``k`` that a release's eval sets
    hold and ``skillmix eval`` draws without ``--eval-set``: one draw, whoever makes it."""
    skills, topics = eligible(catalog, setting, split)
    if k > len(skills):
        raise SamplingError(f"k={k} exceeds the {len(skills)} skills eligible in the {setting} setting")
    size = min(n, count_combinations(len(skills), len(topics), k))
    return list(sample_combinations(catalog, k, size, setting=setting, seed=seed + 1000 * k, split=split))
