"""Pushing an evaluation to the Hugging Face Hub: its numbers into the model card's ``model-index``, and
optionally the whole evaluation folder into a dataset repo of results.

:func:`push_results`

1. (with ``results_repo``) uploads the evaluation folder, without its ``.skillmix/`` work folder, to the
   dataset repo (created public when missing; an existing repo keeps its visibility) under
   ``runs/<run_id>/`` in one commit, and tags that commit ``<run_id>``;
2. writes one ``model-index`` result per (k, setting) with the three metrics into the model repo's
   ``README.md``: task ``text-generation`` / ``Skill-Mix``, dataset ``Skill-Mix held-out (k=3)`` of type
   ``skillmix`` and config ``held-out-k3``, its ``args`` naming the judge and the protocol, each metric's
   value the mean of results.json. ``huggingface_hub.ModelCard.load(repo).data.eval_results`` reads them
   back, one per k x setting x metric.

The card is edited as text: only the ``model-index`` block of its YAML header is replaced (or added), so
its Markdown and every other metadata key stay byte for byte as they were (a ``ModelCard`` round trip
would dump the whole header again: comments, quoting and flow lists would change). The edit is checked by
parsing the header back. A result of the same judge and protocol for the same (k, setting) is replaced,
so pushing a run again never duplicates it; results of other judges, protocols, k or tools stay. A repo
without ``README.md`` gets a minimal card. The card is committed on top of the revision it was read from
(``parent_commit``), so a concurrent change of the card fails the push instead of being overwritten.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from skillmix.config import ConfigError
from skillmix.evaluation.files import read_results
from skillmix.evaluation.plots import cells, display_name, ordered_keys, summary
from skillmix.metrics import METRICS

TASK = {"type": "text-generation", "name": "Skill-Mix"}
DATASET_TYPE = "skillmix"
# The protocol keys that, with the judge, make two results the same evaluation (the run id does not).
PROTOCOL_KEYS = ("generations", "grader_runs", "name_penalty", "length_override", "grader_format", "eval_set")
WORK_FOLDER = ".skillmix/"
MINIMAL_CARD_TEXT = (
    "Skill-Mix evaluation results (`skillmix eval`) are in this card's metadata (`model-index`)."
)
_FRONT_MATTER = re.compile(r"\A(\s*---[ \t]*\r?\n)(.*?)(^---[ \t]*(?:\r?\n|\Z))", re.S | re.M)
_INDEX_KEY = re.compile(r"""^(?:model-index|"model-index"|'model-index')[ \t]*:(?:[ \t]|\r?\n|$)""")


def push_results(folder: Path, model_repo: str, results_repo: str | None, token: str | None = None) -> dict:
    """Push the evaluation in ``folder`` (its results.json) to ``model_repo``'s card and, with
    ``results_repo``, the folder to that dataset repo; the commits made (ids and URLs) and the tag."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    results = read_results(folder)
    run_id = str(results.get("run_id") or "")
    if not run_id:
        raise ConfigError(f"{folder / 'results.json'} has no run_id")
    if not model_index_results(results):
        raise ConfigError(f"{folder / 'results.json'} holds no result with a mean to push")
    api = HfApi(token=token)
    if not api.repo_exists(model_repo):
        raise ConfigError(
            f"the model repo {model_repo} does not exist on the Hub (or the token cannot see it)"
        )
    source = None
    if results_repo:
        source = {"name": f"skillmix eval {run_id}", "url": _run_url(api, results_repo, run_id)}
    new = model_index_results(results, source)
    head, card = _read_card(api, model_repo)
    updated = update_card(card, new, model_repo.split("/")[-1])  # refused here, before anything is pushed
    out: dict[str, Any] = {"run_id": run_id, "model_repo": model_repo}
    if results_repo:
        out.update(_push_folder(api, folder, results_repo, run_id))
    out.update(_push_card(api, model_repo, head, card, updated, run_id))
    out["model_index_entries"] = sum(len(result["metrics"]) for result in new)
    return out


def _run_url(api: Any, repo: str, run_id: str) -> str:
    return f"{api.endpoint}/datasets/{repo}/tree/{run_id}/runs/{run_id}"


# ---------------------------------------------------------------------- the results repo


def _push_folder(api: Any, folder: Path, repo: str, run_id: str) -> dict[str, Any]:
    if not api.repo_exists(repo, repo_type="dataset"):
        api.create_repo(repo, repo_type="dataset", private=False, exist_ok=True)
    head = api.repo_info(repo, repo_type="dataset").sha
    path = f"runs/{run_id}"
    commit = api.upload_folder(
        folder_path=str(folder),
        path_in_repo=path,
        repo_id=repo,
        repo_type="dataset",
        commit_message=f"Skill-Mix evaluation run {run_id}",
        ignore_patterns=[WORK_FOLDER, WORK_FOLDER + "**"],
    )
    tags = {ref.name: ref.target_commit for ref in api.list_repo_refs(repo, repo_type="dataset").tags}
    unchanged = commit.oid == head and run_id in tags  # the same files again: no commit, the tag stays
    if not unchanged and tags.get(run_id) != commit.oid:
        if run_id in tags:  # a changed run folder pushed again: its tag follows the new commit
            api.delete_tag(repo, tag=run_id, repo_type="dataset")
        api.create_tag(repo, tag=run_id, revision=commit.oid, repo_type="dataset")
    return {
        "results_repo": repo,
        "results_path": path,
        "results_commit": tags[run_id] if unchanged else commit.oid,
        "results_commit_url": None if unchanged else commit.commit_url,  # None: no new commit
        "results_url": _run_url(api, repo, run_id),
        "tag": run_id,
    }


# ---------------------------------------------------------------------- the model card


def model_index_results(results: dict[str, Any], source: dict[str, str] | None = None) -> list[dict]:
    """The ``model-index`` results of a results.json dict: one per (k, setting), the three metrics each."""
    args = evaluation_args(results)
    grid = cells(results)
    out = []
    for k, setting in ordered_keys(grid):
        metrics = [
            {"type": metric, "name": display_name(metric), "value": float(found["mean"])}
            for metric in METRICS
            if (found := summary(grid[(k, setting)], metric)) is not None
        ]
        if not metrics:
            continue
        dataset = {"name": f"Skill-Mix {setting} (k={k})", "type": DATASET_TYPE, "config": f"{setting}-k{k}"}
        entry = {"task": dict(TASK), "dataset": {**dataset, "args": dict(args)}, "metrics": metrics}
        if source:
            entry["source"] = dict(source)
        out.append(entry)
    return out


def evaluation_args(results: dict[str, Any]) -> dict[str, Any]:
    """What the numbers depend on besides the student: the judge and the protocol; and the run."""
    protocol = results.get("protocol") or {}
    args: dict[str, Any] = {"judge": (results.get("judge") or {}).get("model")}
    args.update({key: protocol[key] for key in PROTOCOL_KEYS if key in protocol})
    args["run_id"] = results.get("run_id")
    return args


def merge_model_index(index: Any, new: list[dict], name: str) -> list[dict]:
    """``index`` with ``new`` results in its first model: a result of the same evaluation is replaced in
    place, the others are appended; every other result is kept as it was."""
    index = copy.deepcopy(index) if isinstance(index, list) and index and isinstance(index[0], dict) else []
    if not index:
        index = [{"name": name, "results": []}]
    index[0].setdefault("name", name)
    fresh = {_identity(result): result for result in new}
    merged, placed = [], set()
    for result in index[0].get("results") or []:
        key = _identity(result)
        if key in fresh:
            if key not in placed:
                merged.append(fresh[key])
                placed.add(key)
            continue
        merged.append(result)
    merged += [result for key, result in fresh.items() if key not in placed]
    index[0]["results"] = merged
    return index


def _identity(result: Any) -> tuple[str, str] | None:
    """(dataset config, judge and protocol) of a skillmix result; None for anything else."""
    if not isinstance(result, dict):
        return None
    task, dataset = result.get("task"), result.get("dataset")
    if not isinstance(task, dict) or not isinstance(dataset, dict):
        return None
    if dataset.get("type") != DATASET_TYPE or task.get("name") != TASK["name"]:
        return None
    args = dataset.get("args") if isinstance(dataset.get("args"), dict) else {}
    args = {key: value for key, value in args.items() if key != "run_id"}
    return str(dataset.get("config")), json.dumps(args, sort_keys=True, default=str)


def _read_card(api: Any, repo: str) -> tuple[str, str | None]:
    """(head commit of main, its README.md or None)."""
    from huggingface_hub.errors import EntryNotFoundError

    head = api.repo_info(repo).sha
    try:
        path = api.hf_hub_download(repo, "README.md", revision=head)
    except EntryNotFoundError:
        return head, None
    return head, Path(path).read_bytes().decode("utf-8")


def _push_card(api: Any, repo: str, head: str, card: str | None, updated: str, run_id: str) -> dict[str, Any]:
    """Commit the updated card on top of ``head`` (the commit it was read from); nothing when unchanged."""
    from huggingface_hub import CommitOperationAdd

    if updated == card:
        return {"model_commit": head, "model_commit_url": None}  # None: no new commit
    commit = api.create_commit(
        repo_id=repo,
        operations=[CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=updated.encode("utf-8"))],
        commit_message=f"Skill-Mix results of evaluation run {run_id}",
        parent_commit=head,
    )
    return {"model_commit": commit.oid, "model_commit_url": commit.commit_url}


def update_card(content: str | None, new: list[dict], name: str) -> str:
    """The card ``content`` (None: no card yet) with ``new`` merged into its ``model-index``; nothing else
    of it changes. ConfigError when the header does not parse or cannot be edited without touching other
    keys."""
    if content is None:
        block = _dump_index(merge_model_index(None, new, name), "\n")
        return f"---\n{block}---\n\n# {name}\n\n{MINIMAL_CARD_TEXT}\n"
    newline = "\r\n" if "\r\n" in content else "\n"
    match = _FRONT_MATTER.match(content)
    header = match.group(2) if match else ""
    try:
        metadata = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"the YAML header of README.md does not parse: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(metadata, dict):
        raise ConfigError("the YAML header of README.md is not a mapping")
    index = merge_model_index(metadata.get("model-index"), new, name)
    block = _dump_index(index, newline)
    if match is None:
        updated = f"---{newline}{block}---{newline}{content}"
    else:
        updated = content[: match.start(2)] + _replace_index(header, block, newline) + content[match.end(2) :]
    if _header_of(updated) != {**metadata, "model-index": index}:
        raise ConfigError("cannot replace the model-index of README.md without changing its other metadata")
    return updated


def _header_of(content: str) -> Any:
    """The parsed YAML header of ``content``; None when it has none or it does not parse."""
    match = _FRONT_MATTER.match(content)
    try:
        return None if match is None else yaml.safe_load(match.group(2))
    except yaml.YAMLError:
        return None


def _dump_index(index: list[dict], newline: str) -> str:
    text = yaml.safe_dump({"model-index": index}, sort_keys=False, allow_unicode=True, width=1000)
    return text.replace("\n", newline)


def _replace_index(header: str, block: str, newline: str) -> str:
    """``header`` with its ``model-index:`` block (the key's line and the lines under it) replaced by
    ``block``, or ``block`` appended; blank and comment lines before the next key stay."""
    lines = header.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _INDEX_KEY.match(line)), None)
    if start is None:
        return header + ("" if not header or header.endswith("\n") else newline) + block
    end = start + 1
    while end < len(lines) and not _starts_key(lines[end]):
        end += 1
    while end - 1 > start and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _starts_key(line: str) -> bool:
    """A line at column 0 that is neither blank, a comment nor a sequence item: the next top-level key."""
    return bool(line.strip()) and line[0] not in " \t#-"
