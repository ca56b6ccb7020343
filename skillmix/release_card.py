"""The release card of a published dataset: Hub YAML metadata, statistics, audit, lineage, changelog.

Rendered from ``dataset_cards/release.md.jinja2`` (installed as ``skillmix_cards``) with the release
manifest: the build manifest of ``skillmix dataset`` plus ``release`` (version, configs, statistics from
:mod:`skillmix.stats`, figures, the leakage audit and the changelog against the previous version).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
import yaml

from skillmix.publish import parse_version

LICENSE = "apache-2.0"


def previous_release(tags: dict[str, Any], version: str) -> str | None:
    """The highest released version below ``version`` among the repo's semver tags."""
    key = parse_version(version)
    older = []
    for tag in tags:
        try:
            parsed = parse_version(tag)
        except ValueError:
            continue
        if parsed < key:
            older.append((parsed, tag))
    return max(older)[1] if older else None


def _mean_score(stats: dict[str, Any], k: str) -> float | None:
    histogram = (stats.get("score_distribution") or {}).get(k) or {}
    total = sum(histogram.values())
    if not total:
        return None
    return sum(int(points) * count for points, count in histogram.items()) / total / (int(k.lstrip("k")) + 3)


def changelog(
    previous: dict[str, Any] | None,
    previous_ids: dict[str, set[str]],
    manifest: dict[str, Any],
    stats: dict[str, Any],
    configs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """What changed since the previous release: rows, acceptance and scores per k, models, prompts."""
    if previous is None:
        return {"first_release": True}
    before = previous.get("release", {})
    rows = {}
    names = sorted(set(previous_ids) | {n for n in configs if not n.startswith("eval-")})
    for name in names:
        now = {r["id"] for r in configs.get(name, [])} if name != "all" else {
            r["id"] for n, rs in configs.items() if n.startswith("k") for r in rs}  # fmt: skip
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
    }


SIZE_CATEGORIES = (
    (1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"), (1e7, "1M<n<10M"),
    (1e8, "10M<n<100M"), (1e9, "100M<n<1B"),
)  # fmt: skip


def hub_metadata(configs: dict[str, dict[str, Any]], tags: list[str], **extra: Any) -> dict[str, Any]:
    """Hub YAML metadata for configs ``{name: {path, rows, split (default train)}}``; ``all`` is not
    counted towards the size, as it repeats the per-k configs."""
    total = sum(info["rows"] for name, info in configs.items() if name != "all")
    size = next((label for limit, label in SIZE_CATEGORIES if total < limit), "1B<n<10B")
    return {
        "configs": [
            {"config_name": name, "data_files": [{"split": info.get("split", "train"), "path": info["path"]}]}
            for name, info in configs.items()
        ],
        "license": LICENSE,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "size_categories": [size],
        "tags": tags,
        **extra,
    }


def render_card(template_name: str, metadata: dict[str, Any], **context: Any) -> str:
    """A card from ``dataset_cards/<template_name>``: the YAML header, then the template."""
    template = (resources.files("skillmix_cards") / template_name).read_text("utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return env.from_string(template).render(yaml_header=header, **context)


def card_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    release = manifest["release"]
    tags = ["synthetic", "skill-mix", "compositional-generalization", "distilabel", "skillmix"]
    return hub_metadata(release["configs"], tags, pretty_name=f"Skill-Mix {release['version']}")


def render_release_card(manifest: dict[str, Any]) -> str:
    return render_card("release.md.jinja2", card_metadata(manifest), m=manifest, r=manifest["release"])
