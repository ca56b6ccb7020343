"""The one rendering helper of every card (dataset folder, release, model): Hub YAML metadata and a
Jinja template of this package (``dataset_cards/`` in the repository, ``skillmix.cards`` when installed).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
import yaml

LICENSE = "apache-2.0"

SIZE_CATEGORIES = (
    (1e3, "n<1K"),
    (1e4, "1K<n<10K"),
    (1e5, "10K<n<100K"),
    (1e6, "100K<n<1M"),
    (1e7, "1M<n<10M"),
    (1e8, "10M<n<100M"),
    (1e9, "100M<n<1B"),
)


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
    """A card from the template ``template_name`` of this package: the YAML header, then the body."""
    template = _template(template_name)
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template),  # for {% include %} of the sections cards share
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return env.from_string(template).render(yaml_header=header, **context)


def _template(name: str) -> str:
    return (resources.files("skillmix.cards") / name).read_text("utf-8")
