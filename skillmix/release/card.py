"""The release card of a published dataset: Hub YAML metadata, statistics, audit, lineage, changelog.

Rendered from ``dataset_cards/release.md.jinja2`` (installed as ``skillmix.cards``) with the release
manifest: the build manifest of ``skillmix dataset`` plus ``release`` (version, configs, statistics from
:mod:`skillmix.release.stats`, figures, the leakage audit and the changelog against the previous version).
"""

from __future__ import annotations

from typing import Any

from skillmix.cards.render import hub_metadata, render_card


def _mean_score(stats: dict[str, Any], k: str) -> float | None:
    histogram = (stats.get("score_distribution") or {}).get(k) or {}
    total = sum(histogram.values())
    if not total:
        return None
    return sum(int(points) * count for points, count in histogram.items()) / total / (int(k.lstrip("k")) + 3)


def review_changes(previous: dict[str, Any] | None, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The rows a human review moved (``skillmix review pull``), when the manifest has a review that the
    previous release did not: ``{dataset, reviewed, to_kept, to_rejected, moved: [{id, k, from, to,
    reason}]}``; None otherwise."""
    review = manifest.get("review")
    if not review or (previous or {}).get("review") == review:
        return None
    counts = review.get("counts", {})
    return {
        "dataset": review.get("dataset"),
        "reviewed": counts.get("reviewed"),
        "to_kept": counts.get("to_kept"),
        "to_rejected": counts.get("to_rejected"),
        "moved": review.get("moved", []),
    }


def changelog(
    previous: dict[str, Any] | None,
    previous_ids: dict[str, set[str]],
    manifest: dict[str, Any],
    stats: dict[str, Any],
    configs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """What changed since the previous release: rows, acceptance and scores per k, models, prompts, and
    the rows moved by a human review (``review``, only when the manifest has a new one)."""
    review = review_changes(previous, manifest)
    if previous is None:
        return {"first_release": True, **({"review": review} if review else {})}
    before = previous.get("release", {})
    rows = {}
    names = sorted(set(previous_ids) | {n for n in configs if not n.startswith("eval-")})
    for name in names:
        now = (
            {r["id"] for r in configs.get(name, [])}
            if name != "all"
            else {r["id"] for n, rs in configs.items() if n.startswith("k") for r in rs}
        )
        old = previous_ids.get(name, set())
        rows[name] = {"added": len(now - old), "removed": len(old - now), "total": len(now)}
    shifts = {}
    old_stats = before.get("stats", {})
    for k, now in (stats.get("per_k") or {}).items():
        old = (old_stats.get("per_k") or {}).get(k, {})
        shifts[k] = {
            "acceptance_before": old.get("acceptance_rate"),
            "acceptance_after": now.get("acceptance_rate"),
            "mean_score_before": _mean_score(old_stats, k),
            "mean_score_after": _mean_score(stats, k),
        }
    models = {
        role: {"before": previous["models"][role]["model"], "after": manifest["models"][role]["model"]}
        for role in ("teacher", "judge")
        if previous["models"][role]["model"] != manifest["models"][role]["model"]
    }
    prompts = sorted(
        name
        for name, h in manifest["prompt_hashes"].items()
        if previous.get("prompt_hashes", {}).get(name) != h
    )
    return {
        "first_release": False,
        "previous_version": before.get("version"),
        "rows": rows,
        "per_k": shifts,
        "models_changed": models,
        "prompts_changed": prompts,
        "split_changed": previous["split"]["hash"] != manifest["split"]["hash"],
        **({"review": review} if review else {}),
    }


def card_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    release = manifest["release"]
    tags = ["synthetic", "skill-mix", "compositional-generalization", "distilabel", "skillmix"]
    return hub_metadata(release["configs"], tags, pretty_name=f"Skill-Mix {release['version']}")


def render_release_card(manifest: dict[str, Any]) -> str:
    return render_card("release.md.jinja2", card_metadata(manifest), m=manifest, r=manifest["release"])
