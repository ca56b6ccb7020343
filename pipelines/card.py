"""The README card of a local dataset folder: Hub YAML metadata (configs and data files) and a summary.

The template is ``dataset_cards/dataset_folder.md.jinja2`` (installed as ``skillmix.cards``); metadata and
rendering are shared with every other card (:mod:`skillmix.cards.render`).
"""

from __future__ import annotations

from typing import Any

from skillmix.cards.render import hub_metadata, render_card

TAGS = ["synthetic", "skill-mix", "skillmix", "distilabel"]


def render_folder_card(manifest: dict[str, Any]) -> str:
    return render_card("dataset_folder.md.jinja2", hub_metadata(manifest["configs"], TAGS), m=manifest)
