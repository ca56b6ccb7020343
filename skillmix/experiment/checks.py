"""What refuses an experiment before its first paid request (one ``ConfigError`` line, exit code 2).

Only the stages still to run are checked: a finished dataset needs no teacher, a finished training no GPU.

* the dataset: its settings, keys and servers, as ``skillmix dataset`` checks them before sending;
* every training run: its recipe as the run will see it (unknown keys, bounds), and a GPU for a student
  that is not a tiny model (the CPU trains only those);
* every evaluation: the judge's key and server, and a GPU for a pretrained base model evaluated here;
* Hub targets: a token;
* leakage: no combination of an evaluation set in the ``train`` or ``all`` setting may be one of the
  dataset's first draw for the same k (the training's own leakage check would refuse those rows only after
  the dataset was paid for). The ``held-out`` set cannot meet a k >= 2 training row by construction.
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
    from skillmix.catalog import load_catalog
    from skillmix.pipelines.run import draw
    from skillmix.release.evalsets import draw_eval_set
    from skillmix.sampling import combination_key

    dataset, settings = experiment.dataset, experiment.eval_settings()
    wanted = settings.get("setting", ["train", "held-out", "all"])
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    risky = [s for s in wanted if s in ("train", "all")]
    if not risky:
        return
    catalog = load_catalog(dataset.catalog, topics=dataset.topics)
    split = catalog.split(dataset.split_seed)
    seed = settings.get("seed", dataset.seed)
    eval_ks = settings.get("k", [2, 3, 4, 5])
    for k in (k for k in dataset.k if k in eval_ks and k >= 2):
        size = dataset.count_for(k) or dataset.target_accepted or 0
        trained = {combination_key(row["skills"], row["topic"]) for row in draw(dataset, catalog, k, 0, size)}
        for setting in risky:
            asked = draw_eval_set(catalog, split, k, setting, settings.get("n", 100), seed)
            shared = [c for c in asked if c.key in trained]
            if shared:
                raise ConfigError(
                    f"evaluation: {len(shared)} of the {len(asked)} k={k} combinations of the {setting} "
                    f"setting are in the dataset's draw (e.g. {shared[0].topic}: "
                    f"{', '.join(s.name for s in shared[0].skills)}); the student would be tested on what "
                    "it trained on. Evaluate held-out only, or change evaluation.settings.seed"
                )
