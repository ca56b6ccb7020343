"""What refuses an experiment before its first paid request (one ``ConfigError`` line, exit code 2).

Only the stages still to run are checked: a finished dataset needs no teacher, a finished training no GPU.

* the dataset: its settings, keys and servers, as ``skillmix dataset`` checks them before sending;
* every training run: its recipe as the run will see it (unknown keys, bounds), and a GPU for a student
  that is not a tiny model (the CPU trains only those);
* every evaluation: the judge's key and server, and a GPU for a pretrained base model evaluated here;
  with ``evaluation.cross_judge``, the second judge's server and price;
* Hub targets: a token;
* the evaluation sets: the ``train`` and ``all`` ones are drawn from the combinations the dataset did not
  draw, so they cannot leak; there must be n of them left (the first round's draw is checked here). The
  ``held-out`` set cannot meet a k >= 2 training row by construction.
"""

from __future__ import annotations

from typing import Any

from skillmix.config import ConfigError, build
from skillmix.experiment.config import BASE
from skillmix.experiment.launch import cuda_available, recipe_path


def check(experiment: Any, pending: list[Any], log: Any) -> None:
    from skillmix.experiment.plan import needs

    missing = needs(experiment, pending)
    if missing:
        raise ConfigError(
            f"experiment {experiment.config.name} cannot run here: it needs {'; and '.join(missing)}"
        )
    kinds = {stage.kind for stage in pending}
    if "dataset" in kinds:
        _dataset_models(experiment)
    trains = [stage for stage in pending if stage.kind == "train"]
    evals = [stage for stage in pending if stage.kind == "eval"]
    for stage in trains:
        _recipe(experiment, stage)
    if evals:
        _judge(experiment, evals[0])
    if any(stage.kind == "crossjudge" for stage in pending):
        _second_judge(experiment)
    if evals:
        for stage in evals:
            if stage.training_set == BASE:
                _base(experiment, stage.student)
    if (experiment.config.hub.dataset_repo and "publish" in kinds) or experiment.config.hub.models:
        _token()
    if "dataset" in kinds or trains:
        _leakage(experiment)


def _dataset_models(experiment: Any) -> None:
    from skillmix.pipelines.config import uses_embedded
    from skillmix.pipelines.dataset import resolve_models
    from skillmix.pipelines.driver import check_models, load_prices

    config = experiment.dataset
    if not uses_embedded(config):
        check_models(config, resolve_models(config), load_prices(config), reach=True)


def _recipe(experiment: Any, stage: Any) -> None:
    from skillmix.training.config import TrainConfig

    data = experiment.recipes[(stage.student, stage.training_set)]
    where = recipe_path(experiment.config, stage.student, stage.training_set)
    source = f"the recipe of {stage.student} on {stage.training_set} ({where})"
    config = build(TrainConfig, data, source)
    if config.model.tiny is None and not cuda_available():
        raise ConfigError(
            f"students.{stage.student}: {config.model.name_or_path} is a pretrained model, and training it "
            "needs a GPU (none is visible here); run `--plan` to see what the experiment needs"
        )


def _judge(experiment: Any, stage: Any) -> None:
    from skillmix.llm.roles import resolve_judge
    from skillmix.pipelines.driver import check_models, load_prices

    config = experiment.eval_config(stage.student, stage.training_set, with_data=False)
    judge = resolve_judge(config.judge, None, hint=" (or give --judge-base-url)")
    check_models(config, [judge], load_prices(config), reach=True)


def _second_judge(experiment: Any) -> None:
    """The second judge's server answers, and its price is known under a cap."""
    from skillmix.llm.roles import ResolvedModel, base_url_for
    from skillmix.pipelines.driver import check_models, load_prices

    spec = experiment.config.evaluation.cross_judge
    config = experiment.eval_config(*next(iter(experiment.config.runs())), with_data=False)
    second = ResolvedModel("second judge", spec.model, base_url_for(spec.base_url))
    check_models(config, [second], load_prices(config), reach=True)


def _base(experiment: Any, student: str) -> None:
    from pathlib import Path

    spec = experiment.config.students[student]
    if spec.base_url or Path(str(spec.base)).is_dir() or cuda_available():
        return
    raise ConfigError(
        f"students.{student}.base: evaluating {spec.base} on this machine needs a GPU (none is visible); "
        "serve it elsewhere and give students.{student}.base_url"
    )


def _token() -> None:
    from huggingface_hub import get_token

    if not get_token():
        raise ConfigError("hub: the experiment pushes to the Hub; set HF_TOKEN or run `hf auth login`")


def _leakage(experiment: Any) -> None:
    """The train and all evaluation sets are drawn from the combinations the dataset did not draw
    (:func:`skillmix.release.evalsets.draw_eval_set`), so they cannot leak; what can fail is their size:
    refused here, before the first paid request, when the first round's draw leaves fewer than n (later
    rounds under --target-accepted draw more: the evaluation checks the exact draw again)."""
    from skillmix.catalog import load_catalog
    from skillmix.pipelines.run import draw
    from skillmix.release.evalsets import draw_eval_set
    from skillmix.sampling import SamplingError, combination_key

    dataset, settings = experiment.dataset, experiment.eval_settings()
    wanted = settings.get("setting", ["train", "held-out", "all"])
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    risky = [s for s in wanted if s in ("train", "all")]
    if not risky:
        return
    catalog = load_catalog(dataset.catalog, topics=dataset.topics)
    split = catalog.split(dataset.split_seed)
    seed = settings.get("seed", dataset.seed)
    for k in (k for k in dataset.k if k in settings.get("k", [2, 3, 4, 5]) and k >= 2):
        size = dataset.count_for(k) or dataset.target_accepted or 0
        drawn = frozenset(
            combination_key(r["skills"], r["topic"]) for r in draw(dataset, catalog, k, 0, size)
        )
        for setting in risky:
            try:
                draw_eval_set(catalog, split, k, setting, settings.get("n", 100), seed, drawn)
            except SamplingError as exc:
                raise ConfigError(
                    f"evaluation: {exc}; lower evaluation.settings.n or the dataset's n"
                ) from None
