"""The combinations an evaluation asks about, per setting and k: from a release's ``eval-<setting>`` configs
(a Hub repo at a revision, or a local release folder) or, without one, drawn from the catalog and its split
exactly as ``skillmix publish`` draws a release's eval sets (:func:`skillmix.release.evalsets.draw_eval_set`),
so that both give the same combinations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skillmix.catalog import Catalog
from skillmix.config import ConfigError
from skillmix.hub_ids import split_revision
from skillmix.release.evalsets import draw_eval_set, eval_config_name
from skillmix.sampling import Combination, SamplingError
from skillmix.splits import Split

Sets = dict[tuple[str, int], list[Combination]]


def eval_sets(
    catalog: Catalog,
    split: Split,
    settings: list[str],
    ks: list[int],
    n: int,
    seed: int,
    eval_set: str | None = None,
    exclude: frozenset[Any] = frozenset(),
) -> Sets:
    """``{(setting, k): combinations}``, none of ``exclude`` (a dataset's draw: see
    :func:`skillmix.release.evalsets.draw_eval_set`); every problem is a :class:`ConfigError` before any
    request."""
    if eval_set is None:
        out: Sets = {}
        for setting in settings:
            for k in ks:
                try:
                    out[(setting, k)] = draw_eval_set(catalog, split, k, setting, n, seed, exclude)
                except SamplingError as exc:
                    raise ConfigError(str(exc)) from None
        return out
    return _from_release(catalog, settings, ks, n, eval_set)


def _from_release(catalog: Catalog, settings: list[str], ks: list[int], n: int, reference: str) -> Sets:
    by_name = {skill.name: skill for skill in catalog.skills}
    out: Sets = {}
    for setting in settings:
        rows = _load_config(reference, eval_config_name(setting))
        for k in ks:
            chosen = [row for row in rows if int(row["k"]) == k][:n]
            if not chosen:
                present = sorted({int(row["k"]) for row in rows})
                raise ConfigError(
                    f"the eval set {reference} has no k={k} in {eval_config_name(setting)} "
                    f"(it has k={','.join(map(str, present)) or 'none'})"
                )
            out[(setting, k)] = [_combination(row, by_name, setting, reference) for row in chosen]
    return out


def _combination(row: dict[str, Any], by_name: dict[str, Any], setting: str, reference: str) -> Combination:
    missing = [name for name in row["skills"] if name not in by_name]
    if missing:
        raise ConfigError(
            f"the eval set {reference} names skills the catalog does not have ({', '.join(missing[:3])}); "
            "give the catalog it was built with (--catalog)"
        )
    combo = Combination(tuple(by_name[name] for name in row["skills"]), row["topic"], setting)
    if row.get("id") and row["id"] != combo.id:
        raise ConfigError(f"the eval set {reference} row {row['id']} does not match its skills and topic")
    return combo


def _load_config(reference: str, name: str) -> list[dict[str, Any]]:
    """One ``eval-<setting>`` config of a release, through ``datasets`` (split ``test``)."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise ConfigError(
            "--eval-set needs the `datasets` package (pip install 'skillmix[pipeline]')"
        ) from None
    path, revision = split_revision(reference)
    if not Path(path).exists() and "/" not in path:
        raise ConfigError(f"--eval-set {reference}: no such folder, and not a Hub repo id (org/name)")
    try:
        return load_dataset(path, name, split="test", revision=revision).to_list()
    except Exception as exc:  # datasets raises many types; each is one line for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--eval-set {reference}: cannot load its {name} config ({reason})") from None
