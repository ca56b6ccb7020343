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
    exclude: frozenset[Any] = frozenset(),
) -> dict[str, list[dict[str, Any]]]:
    """``{"eval-train": rows, "eval-held-out": rows, "eval-all": rows}``, ``n`` combinations per k, none of
    ``exclude`` (:func:`draw_eval_set`)."""
    prompts = prompts or PromptSet()
    out: dict[str, list[dict[str, Any]]] = {}
    for setting in settings:
        rows = []
        for k in ks:
            for combo in draw_eval_set(catalog, split, k, setting, n, seed, exclude):
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
    catalog: Catalog,
    split: Split,
    k: int,
    setting: str,
    n: int,
    seed: int = 0,
    exclude: frozenset[Any] = frozenset(),
) -> list[Combination]:
    """The ``n`` (at most: all there are) combinations of ``setting`` and ``k`` that a release's eval sets
    hold and ``skillmix eval`` draws without ``--eval-set``: one draw, whoever makes it.

    ``exclude``: the ``combination_key``s of a dataset's draw (``DatasetFolder.drawn_keys``). The sampler
    then draws ``n`` more than usual, one for each drawn combination of this setting and k, and the first
    ``n`` it drew that the dataset did not are the set: an evaluation in the train or all setting never asks
    what its training data showed, by construction (the held-out setting cannot meet a training row of
    k >= 2, so its set is unchanged). Fewer than ``n`` left is refused, with the numbers."""
    skills, topics = eligible(catalog, setting, split)
    if k > len(skills):
        raise SamplingError(f"k={k} exceeds the {len(skills)} skills eligible in the {setting} setting")
    total = count_combinations(len(skills), len(topics), k)
    names, topic_names = {s.name for s in skills}, set(topics)
    blocked = {key for key in exclude if len(key[0]) == k and key[0] <= names and key[1] in topic_names}
    if blocked and total - len(blocked) < n:
        raise SamplingError(
            f"the {setting} setting has {total:,} combinations at k={k} and the dataset drew "
            f"{len(blocked):,} of them: {total - len(blocked):,} are left, fewer than the {n} asked for"
        )
    size = min(total, n + len(blocked))
    drawn = sample_combinations(catalog, k, size, setting=setting, seed=seed + 1000 * k, split=split)
    return [c for c in drawn if c.key not in blocked][:n]


def exclusion_record(exclude: frozenset[Any]) -> dict[str, Any]:
    """What the results and a release record of the combinations their train and all sets left out: how
    many, and a content hash of them (the same dataset draw gives the same hash)."""
    from skillmix.skills import content_hash

    keys = sorted([sorted(skills), topic] for skills, topic in exclude)
    return {"combinations": len(keys), "hash": content_hash(keys)}
