"""The stages that call the toolkit in this process: the dataset, its release, the evaluations, the
comparison, and the push of the report. Each is the command a user would run (``skillmix dataset``,
``publish``, ``eval``, ``eval compare``) through the same functions, with the experiment's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skillmix.experiment.config import BASE


def dataset(experiment: Any, log: Any) -> None:
    from skillmix.pipelines.run import run_dataset
    from skillmix.pipelines.summary import summary_text

    result = run_dataset(experiment.dataset, experiment.dataset_folder, log=log)
    if result is not None and not result.written:
        log(f"{experiment.dataset_folder} is already complete: nothing was paid")
    import json

    manifest = json.loads((experiment.dataset_folder / "manifest.json").read_text(encoding="utf-8"))
    log(summary_text(manifest, experiment.dataset_folder))


def publish(experiment: Any, log: Any) -> None:
    from skillmix.release.publish import publish as publish_release

    hub = experiment.config.hub
    result = publish_release(
        experiment.dataset_folder, hub.dataset_repo, hub.dataset_version, private=hub.private, log=log
    )
    log(f"published {result.repo_id} {result.version} (commit {result.commit})")


def evaluate(experiment: Any, stage: Any, log: Any) -> None:
    from skillmix.evaluation.cli import summary
    from skillmix.evaluation.hub import push_results
    from skillmix.evaluation.run import run_eval
    from skillmix.pipelines.output import RunFailed

    config = experiment.eval_config(stage.student, stage.training_set)
    results = run_eval(config, stage.folder, log=log)
    log(summary(results, stage.folder))
    errored = results.get("errored") or []
    if errored:
        raise RunFailed(
            f"{stage.name}: {len(errored)} generations errored (the infrastructure, not the student); run "
            "the same command again to retry only those"
        )
    hub = experiment.config.hub
    repo = experiment.config.repo_of(stage.student, stage.training_set)
    if repo and stage.training_set != BASE:
        pushed = push_results(stage.folder, repo, hub.results_repo)
        log(f"{repo}: model-index updated ({pushed['model_index_entries']} entries)")


def cross_judge(experiment: Any, stage: Any, log: Any) -> None:
    """The evaluation of ``stage``'s model re-graded in part by the second judge
    (:mod:`skillmix.evaluation.crossjudge`)."""
    from skillmix.evaluation.crossjudge import regrade
    from skillmix.llm.client import Endpoint
    from skillmix.pipelines.output import RunFailed

    spec = experiment.config.evaluation.cross_judge
    judged = experiment.stage(f"eval/{stage.student}/{stage.training_set}").folder
    config = experiment.eval_config(stage.student, stage.training_set)
    judge = Endpoint(spec.model, spec.base_url, spec.api_key_env)
    record = regrade(config, judge, judged, stage.folder, spec.n, spec.seed, log)
    points, full = record["points"], record["full_marks"]
    log(
        f"[{stage.name}] {record['judges']['second']} vs {record['judges']['first']}: kappa "
        f"{_figure(points['kappa'])} on {points['n']} rubric points of {points['records']} generations, "
        f"{_figure(full['kappa'])} on Full Marks"
    )
    from skillmix.evaluation.files import read_results

    errored = read_results(stage.folder).get("errored") or []
    if errored:
        raise RunFailed(
            f"{stage.name}: {len(errored)} generations were not graded by the second judge (the "
            "infrastructure); run the same command again to retry only those"
        )


def _figure(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def compare(experiment: Any, stage: Any) -> None:
    """``skillmix eval compare`` once per student, into ``compare/<student>/``: its evaluations only, its
    base first when it has one (a comparison never subtracts one student's base from another's runs)."""
    from skillmix.evaluation.report import write_comparison

    for student in experiment.config.students:
        mine = [e for e in experiment.evaluations() if e.student == student]
        mine.sort(key=lambda e: e.training_set != BASE)  # stable: the base first, then the file's order
        if len(mine) > 1:
            write_comparison([e.folder for e in mine], stage.folder / student, allow=())


def push_report(experiment: Any, folder: Path, log: Any) -> None:
    """The report folder as one commit of the results repo, tagged ``<experiment>-<report fingerprint>``."""
    from huggingface_hub import HfApi

    hub = experiment.config.hub
    api = HfApi()
    api.create_repo(hub.results_repo, repo_type="dataset", private=hub.private, exist_ok=True)
    name = experiment.config.name
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=hub.results_repo,
        repo_type="dataset",
        path_in_repo=f"experiments/{name}",
        commit_message=f"skillmix experiment {name}: report",
    )
    tag = f"{name}-{experiment.stage('report').fingerprint}"
    api.create_tag(hub.results_repo, tag=tag, revision=commit.oid, repo_type="dataset", exist_ok=True)
    log(f"report pushed to {hub.results_repo} (commit {commit.oid[:10]}, tag {tag})")
