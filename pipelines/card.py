"""The README card of a local dataset folder: Hub YAML metadata (configs and data files) and a summary.

The template is ``dataset_cards/dataset_folder.md.jinja2`` (installed as ``skillmix_cards``). The richer
release card of ``skillmix publish`` builds on the same manifest.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
import yaml


def card_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    configs = [
        {"config_name": name, "data_files": [{"split": "train", "path": info["path"]}]}
        for name, info in manifest["configs"].items()
    ]
    total = sum(info["rows"] for info in manifest["configs"].values())
    size = "n<1K" if total < 1000 else "1K<n<10K" if total < 10_000 else "10K<n<100K"
    return {
        "configs": configs,
        "license": "apache-2.0",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "size_categories": [size],
        "tags": ["synthetic", "skill-mix", "skillmix", "distilabel"],
    }


def render_folder_card(manifest: dict[str, Any]) -> str:
    template_text = (resources.files("skillmix_cards") / "dataset_folder.md.jinja2").read_text("utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    header = yaml.safe_dump(card_metadata(manifest), sort_keys=False, allow_unicode=True)
    return env.from_string(template_text).render(m=manifest, yaml_header=header)
