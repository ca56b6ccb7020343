"""The model card of a fine-tuned student and its training loss curve.

The card is rendered from ``dataset_cards/model.md.jinja2`` by :func:`skillmix.cards.render.render_card`:
Hub metadata (base model, datasets, tags, and the ``model-index`` results that ``skillmix eval
--push-results`` added to an earlier card of the repo), then the base model, the method (SFT, or DPO with
its beta, loss and pair count), the training datasets with repo and revision, the recipe and its
hyper-parameters, the loss curve, hardware and wall time, the evaluation results and the citations.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skillmix.training.config import TrainConfig

CARD_TEMPLATE = "model.md.jinja2"


@dataclass
class RunRecord:
    """What a finished run reports: everything the card says beyond the recipe."""

    sources: list[dict[str, Any]]
    rows: int
    plain_rows: int
    parameters: int
    processes: int
    accumulation: int
    wall_seconds: float
    steps: int
    hardware: str
    losses: list[tuple[int, float]] = field(default_factory=list)
    leakage: list[dict[str, Any]] = field(default_factory=list)
    method: str = "sft"  # rows are conversations (sft) or preference pairs (dpo)
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # what a method adds (grpo: the judge, why it stopped)


def hardware() -> str:
    """The accelerator (or CPU) this process trains on, in words."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)} per node"
    import os

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def losses_from(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]


def plot_loss(losses: list[tuple[int, float]], path: Path) -> str | None:
    """The training loss against the step, as a PNG at ``path``; ``None`` when nothing was logged."""
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([s for s, _ in losses], [v for _, v in losses], marker="." if len(losses) < 50 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def stop_note(record: RunRecord) -> str | None:
    """What the card and the Hub push say of a run that stopped before its steps: "stopped at the judge's
    cap after N of M steps" (or, ungraded completions: "stopped after N of M steps: too many completions
    could not be graded"); None for a run that ran them all."""
    stop = record.extra.get("stop")
    if not stop:
        return None
    steps = f"after {stop['step']} of {stop['of']} steps"
    if stop["kind"] == "cap":
        return f"stopped at the judge's cap {steps}"
    return f"stopped {steps}: too many completions could not be graded"


def card_metadata(config: TrainConfig, record: RunRecord, existing: dict[str, Any] | None) -> dict[str, Any]:
    """Hub metadata; ``model-index`` results of an earlier card of the repo are kept."""
    metadata: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation"}
    if config.model.tiny is None:
        metadata["base_model"] = config.model.name_or_path
    hub_datasets = [s["path"] for s in record.sources if s["hub"]]
    if hub_datasets:
        metadata["datasets"] = hub_datasets
    metadata["tags"] = ["skill-mix", "skillmix", "trl", record.method]
    if existing and existing.get("model-index"):
        metadata["model-index"] = existing["model-index"]
    return metadata


def results_of(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (task, dataset, metric, value) of the ``model-index`` of ``metadata``."""
    rows = []
    for entry in metadata.get("model-index") or []:
        for result in entry.get("results") or []:
            dataset = (result.get("dataset") or {}).get("name", "")
            task = (result.get("task") or {}).get("name", (result.get("task") or {}).get("type", ""))
            for metric in result.get("metrics") or []:
                name = metric.get("name", metric.get("type"))
                rows.append({"task": task, "dataset": dataset, "metric": name, "value": metric.get("value")})
    return rows


def render_model_card(
    config: TrainConfig,
    record: RunRecord,
    title: str,
    existing: dict[str, Any] | None = None,
    figure: str | None = None,
) -> str:
    """The card's Markdown, YAML header first."""
    from skillmix.cards.render import render_card

    metadata = card_metadata(config, record, existing)
    recipe = config.model_dump(exclude={"hub", "recipe", "output_dir"}, exclude_none=True)
    return render_card(
        CARD_TEMPLATE,
        metadata,
        title=title,
        config=config,
        record=record,
        figure=figure,
        results=results_of(metadata),
        recipe_yaml=yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).rstrip(),
        effective_batch=config.training.per_device_train_batch_size * record.accumulation * record.processes,
        stop_note=stop_note(record),
    )


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML header of a card (``---`` ... ``---``), or ``{}``."""
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
