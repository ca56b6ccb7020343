"""The README card of a local dataset folder: Hub YAML metadata (configs and data files) and a summary.

The template is ``dataset_cards/dataset_folder.md.jinja2`` (installed as ``skillmix_cards``); metadata and
rendering are shared with the release card of ``skillmix publish`` (:mod:`skillmix.release_card`).
"""

from __future__ import annotations

from typing import Any

from skillmix.release_card import hub_metadata, render_card

TAGS = ["synthetic", "skill-mix", "skillmix", "distilabel"]


def render_folder_card(manifest: dict[str, Any]) -> str:
    return render_card("dataset_folder.md.jinja2", hub_metadata(manifest["configs"], TAGS), m=manifest)
