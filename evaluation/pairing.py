"""Which evaluation runs may be compared, and each later run against the baseline combination by
combination: what ``skillmix eval compare`` (:mod:`skillmix.evaluation.report`) tabulates.

**Refused.** Two runs measure the same thing only under the same protocol. :data:`FIELDS` names what must
agree, as ``--allow-different`` takes it: ``judge`` (results.json ``judge.identity``, else ``judge.model``),
``judge_temperature`` (``protocol.judge.temperature``; ``protocol.judge_sampling.temperature`` in older
files), ``grader_runs``, ``generations``, ``length_override``, ``name_penalty``, ``unparseable`` (the rule
for a generation none of whose grades parsed; ``zero`` when absent, the rule before it was recorded) and
``eval_set`` (``protocol.eval_set_hash``, the content hash of the combination ids asked about). A field the
caller allows is compared anyway; the report names it with each run's value.

A results.json without ``eval_set_hash`` cannot show which combinations it asked, so its eval set differs
from every other run's, another run without one included: two older runs drawn with different seeds would
otherwise pass for one eval set. ``--allow-different eval_set`` compares them anyway, on the combinations
they share (``n`` says how many).

**Paired.** Both runs answered the same combinations, so the comparison is made pair by pair: it removes
what the combinations themselves vary by, which is most of the spread of a mean; whether two 95% intervals
overlap ignores the pairing (and overlapping intervals can hide a difference every combination shows). For
each (setting, k, metric), on the combinations both runs answered and both scored (ids whose value is not
NaN in either run): the mean of the differences (later − baseline), its paired bootstrap 95% interval
(:data:`BOOTSTRAP`: resamples of those combinations, the same draw for both runs) and the p-value of a
two-sided sign-flip permutation test (:data:`PERMUTATION`: every sign pattern when at most ``exact_up_to``
differences are nonzero, else that many random ones). ``significant`` is ``p < ALPHA``.

The per-combination values are those of the run's results.json: :func:`skillmix.evaluation.score.
combination_values` under the run's own protocol; the statistics are :func:`skillmix.metrics.
paired_bootstrap` and :func:`skillmix.metrics.paired_permutation_p`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from skillmix.config import ConfigError
from skillmix.evaluation.score import combination_values, groups
from skillmix.metrics import paired_bootstrap, paired_permutation_p
from skillmix.rules import UNRECORDED_UNPARSEABLE, ScoringRules

FIELDS = (
    "judge",
    "judge_temperature",
    "grader_runs",
    "generations",
    "length_override",
    "name_penalty",
    "unparseable",
    "eval_set",
)
NOT_RECORDED = "not recorded"
ALPHA = 0.05
BOOTSTRAP = {"n_resamples": 1000, "confidence": 0.95, "seed": 0}
PERMUTATION = {"exact_up_to": 16, "n_permutations": 10000, "seed": 0}
STATISTICS = {
    "pairs": "combinations both runs answered and both scored",
    "difference": "mean over the pairs of (run - baseline)",
    "interval": {"method": "paired percentile bootstrap (resamples the pairs)", **BOOTSTRAP},
    "p": {"method": "two-sided sign-flip permutation test (exact up to exact_up_to nonzero differences)"}
    | PERMUTATION,
    "significant": f"p < {ALPHA}",
}
PAIRED = ("n", "difference", "ci_low", "ci_high", "p", "p_method", "significant")
Values = dict[tuple[int, str], dict[str, np.ndarray]]  # (k, setting) -> combination id -> its 3 metrics


# ---------------------------------------------------------------------- what may be compared


def protocol_fields(results: dict[str, Any]) -> dict[str, Any]:
    """The :data:`FIELDS` of one results.json (older layouts too); None where a field is not recorded."""
    judge, protocol = results.get("judge") or {}, results.get("protocol") or {}
    voted = protocol.get("judge") if isinstance(protocol.get("judge"), dict) else {}
    sampling = protocol.get("judge_sampling") or {}
    return {
        "judge": judge.get("identity") or judge.get("model") or voted.get("model"),
        "judge_temperature": voted.get("temperature", sampling.get("temperature")),
        **{
            key: protocol.get(key)
            for key in ("grader_runs", "generations", "length_override", "name_penalty")
        },
        "unparseable": protocol.get("unparseable", UNRECORDED_UNPARSEABLE),
        "eval_set": protocol.get("eval_set_hash"),
    }


def check_protocols(runs: list[tuple[str, dict[str, Any]]], allow: Iterable[str] = ()) -> dict[str, list]:
    """The fields of :data:`FIELDS` that differ between the runs ([(name, results.json dict)]), with each
    run's value; ConfigError (one line, naming each field and its values) for one ``allow`` does not name."""
    allow = list(allow)
    unknown = [field for field in allow if field not in FIELDS]
    if unknown:
        choices = ", ".join(FIELDS)
        raise ConfigError(f"--allow-different {unknown[0]}: not a protocol field (choose from {choices})")
    found = [protocol_fields(results) for _, results in runs]
    values = {field: [fields[field] for fields in found] for field in FIELDS}
    differing = {field: listed for field, listed in values.items() if _differ(field, listed)}
    refused = [field for field in differing if field not in allow]
    if refused:
        names = [name for name, _ in runs]
        listed = "; ".join(f"{field} differs ({_grouped(differing[field], names)})" for field in refused)
        flags = " ".join(f"--allow-different {field}" for field in refused)
        raise ConfigError(
            f"cannot compare runs of different protocols: {listed}; {flags} compares them anyway"
        )
    return differing


def shown(value: Any) -> str:
    """A field's value as the refusal and the report print it."""
    return NOT_RECORDED if value is None else value if isinstance(value, str) else json.dumps(value)


def _differ(field: str, values: list[Any]) -> bool:
    if field == "eval_set" and len(values) > 1 and None in values:
        return True  # not recorded: nothing shows it asked what the others asked (module docstring)
    return any(value != values[0] for value in values[1:])


def _grouped(values: list[Any], names: list[str]) -> str:
    """``gpt-4o in base, ft; claude in odd``: each value once, with the runs that have it."""
    found: list[tuple[Any, list[str]]] = []
    for value, name in zip(values, names, strict=True):
        same = next((members for seen, members in found if seen == value), None)
        if same is None:
            found.append((value, [name]))
        else:
            same.append(name)
    return "; ".join(f"{shown(value)} in {', '.join(members)}" for value, members in found)


# ---------------------------------------------------------------------- combination by combination


def per_combination(name: str, results: dict[str, Any], samples: list[dict[str, Any]]) -> Values:
    """``{(k, setting): {combination id: its 3 metrics, NaN when not scored}}`` of one run, from its samples
    under its own protocol (the numbers of its results.json). ConfigError when the protocol lacks the
    sizes or the scoring rules (:meth:`skillmix.rules.ScoringRules.from_config`)."""
    protocol = results.get("protocol") or {}
    runs, generations = protocol.get("grader_runs"), protocol.get("generations")
    if not isinstance(runs, int) or not isinstance(generations, int):
        raise ConfigError(
            f"the results.json of {name} names no grader_runs and generations to score samples by"
        )
    rules = ScoringRules.from_config(protocol, f"the results.json of {name}: protocol")
    found = {}
    for (setting, k), group in groups(samples).items():
        ids, scored = combination_values(group, k, runs, generations, rules)
        found[(k, setting)] = dict(zip(ids, scored.per_combination, strict=True))
    return found


def mean_over_runs(found: list[Values]) -> Values:
    """Per (k, setting) and combination, the mean over runs (one model trained with several seeds) of the 3
    metrics; NaN where a run has no value for it (a combination one seed's model did not score is left out
    of the paired statistics, as a combination one run did not score is)."""
    out: Values = {}
    for cell in {key for values in found for key in values}:
        ids = list(dict.fromkeys(c for values in found for c in values.get(cell, {})))
        missing = np.full(3, np.nan)
        out[cell] = {
            c: np.mean([values.get(cell, {}).get(c, missing) for values in found], axis=0) for c in ids
        }
    return out


def paired(base: dict[str, np.ndarray] | None, other: dict[str, np.ndarray] | None, column: int) -> dict:
    """A run against the baseline in one (setting, k), metric ``column``: n (the combinations both scored),
    the mean difference, its interval, p, how p was computed and whether it is significant; all None when
    a run has no values there, n = 0 and None when they share no scored combination."""
    if base is None or other is None:
        return dict.fromkeys(PAIRED)
    both = [
        c for c in base if c in other and not np.isnan(base[c][column]) and not np.isnan(other[c][column])
    ]
    if not both:
        return {**dict.fromkeys(PAIRED), "n": 0}
    a, b = (np.array([values[c][column] for c in both]) for values in (base, other))
    interval = paired_bootstrap(a, b, **BOOTSTRAP)
    test = paired_permutation_p(a, b, **PERMUTATION)
    return {
        "n": interval.n,
        "difference": interval.difference,
        "ci_low": interval.ci_low,
        "ci_high": interval.ci_high,
        "p": test.p,
        "p_method": "exact" if test.exact else "monte-carlo",
        "significant": test.p < ALPHA,
    }
