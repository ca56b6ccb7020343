"""The training stage: a student's recipe pointed at the experiment's dataset, run in a process of its own.

The recipe the run sees is the student's (its model the one another set trained, with ``from``), with its
dataset replaced by the experiment's folder and the
training set's configs (and subsample), its evaluation set by the experiment's (so that the training's
leakage check refuses any row an evaluation will ask about), its output folder by the stage's, and, with
``hub.models``, its Hub repo ``<models>/<student>-<set>``; it is written to
``runs/<experiment>/recipes/<student>--<set>.yaml`` (the record of what was trained) and given to
``python -m skillmix.training`` (``skillmix train``, any method). With ``launcher.num_processes`` > 1 or an
accelerate config, the run goes through ``accelerate launch``; where no GPU is visible, several processes
go through ``torchrun`` (torch.distributed over gloo, the path the tests take: ``accelerate launch --cpu``
starts one process on one machine, whatever ``--num_processes`` says). The run's output goes to the
terminal and to ``runs/<experiment>/logs/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from skillmix.config import ConfigError, read_yaml
from skillmix.experiment.config import ExperimentConfig
from skillmix.pipelines.output import RunFailed

EVAL_SETTINGS = ("train", "held-out", "all")


def recipe_data(config: ExperimentConfig, student: str, run: str, dataset: Path) -> dict[str, Any]:
    """The recipe of ``student`` on ``run`` (a training set, or one seed's run of it) as the run sees it
    (module docstring)."""
    from skillmix.training.config import resolve_recipe

    training_set = config.set_of(run)
    tset = config.training_sets[training_set]
    named = tset.recipe or config.students[student].recipe
    path = resolve_recipe(named)
    if not path.is_file():
        where = f"training_sets.{training_set}" if tset.recipe else f"students.{student}"
        raise ConfigError(f"{where}.recipe: {named} not found")
    data = read_yaml(path, "recipe")
    if tset.method is not None:
        data["method"] = tset.method
    source: dict[str, Any] = {"path": str(dataset), "configs": list(tset.configs)}
    if tset.subsample:
        source["subsample"] = dict(tset.subsample)
    settings = config.evaluation.settings
    wanted = settings.get("setting", list(EVAL_SETTINGS))
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    evaluation: dict[str, Any] = {"settings": sorted({*wanted, "held-out"}, key=EVAL_SETTINGS.index)}
    for key in ("n", "seed", "k"):  # exactly the sets the evaluation will draw (its seed and k included)
        if settings.get(key) is not None:
            evaluation[key] = settings[key] if key != "k" else sorted(settings["k"])
    data["data"] = {**(data.get("data") or {}), "datasets": [source], "evaluation": evaluation}
    source = config.source_run(run)
    if source is not None:  # the model the source run trained, in place of the student's base
        trained = config.root() / "train" / f"{student}--{source}"
        data["model"] = {**(data.get("model") or {}), "name_or_path": str(trained), "revision": None,
                         "tiny": None}  # fmt: skip
    seed = config.seed_of(run)
    if seed is not None:  # one seed's run: the training's seed (and a tiny model's initialisation)
        data["training"] = {**(data.get("training") or {}), "seed": seed}
        model = data.get("model") or {}
        if model.get("tiny") is not None:  # a tiny model's initialisation (not one started from a run)
            data["model"] = {**model, "tiny": {**model["tiny"], "seed": seed}}
    data["output_dir"] = str(config.root() / "train" / f"{student}--{run}")
    if repo := config.repo_of(student, run):
        hub = dict(data.get("hub") or {})
        data["hub"] = {**hub, "push_to_hub": repo, "private": config.hub.private}
    if data.get("method") == "grpo":
        data["grpo"] = {**(data.get("grpo") or {}), "judge": grpo_judge(config, data)}
    data.pop("recipe", None)
    return data


def grpo_judge(config: ExperimentConfig, data: dict[str, Any]) -> dict[str, Any]:
    """The judge that rewards a GRPO run: the recipe's grading settings, with the experiment's judge model
    and server (the evaluation's, else the dataset's judge, else its teacher, as :func:`judge_defaults`
    decides), so that one judge grades the data, the RL and the evaluation."""
    from skillmix.llm.roles import judge_defaults

    recipe = {key: value for key, value in ((data.get("grpo") or {}).get("judge") or {}).items()}
    settings = config.dataset.settings
    judge = {**(settings.get("judge") or {}), **(config.evaluation.settings.get("judge") or {})}
    teacher = settings.get("teacher") or {}
    model, url = judge_defaults(
        judge.get("model"), judge.get("base_url"), teacher.get("model"), teacher.get("base_url")
    )
    chosen = {key: value for key, value in (("model", model), ("base_url", url)) if value is not None}
    return {**recipe, **chosen}


def is_tiny(
    config: ExperimentConfig, recipes: dict[tuple[str, str], dict[str, Any]], student: str, run: str
) -> bool:
    """A run of a tiny model: its recipe's, or that of the run it starts ``from`` (trained here, on the
    CPU as well)."""
    return recipes[(student, config.origin_run(run))]["model"].get("tiny") is not None


def recipe_path(config: ExperimentConfig, student: str, training_set: str) -> Path:
    return config.root() / "recipes" / f"{student}--{training_set}.yaml"


def write_recipe(config: ExperimentConfig, student: str, training_set: str, data: dict[str, Any]) -> Path:
    path = recipe_path(config, student, training_set)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {student} on {training_set}, as `skillmix experiment run {config.source}` trains it\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def command(config: ExperimentConfig, recipe: Path, cuda: bool) -> list[str]:
    """The command line of a training run under the experiment's launcher."""
    train = ["-m", "skillmix.training", "--config", str(recipe)]
    launcher = config.launcher
    if launcher.num_processes == 1 and not launcher.accelerate_config:
        return [sys.executable, *train]
    if not cuda:
        return [*cpu_launcher(launcher.num_processes), *train]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(launcher.num_processes)]
    if launcher.accelerate_config:
        cmd += ["--config_file", launcher.accelerate_config]
    return [*cmd, *train]


def cpu_launcher(processes: int) -> list[str]:
    """``torchrun`` on this machine: ``processes`` CPU ranks of one job (the Trainer sets ``use_cpu``)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def train(experiment: Any, stage: Any, log: Any) -> None:
    """Run one training stage; a failure is one line naming its log."""
    config = experiment.config
    data = experiment.recipes[(stage.student, stage.training_set)]
    recipe = write_recipe(config, stage.student, stage.training_set, data)
    logs = config.root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"train-{stage.student}--{stage.training_set}.log"
    cmd = command(config, recipe, cuda_available())
    log(f"[{stage.name}] {' '.join(cmd[1:])}")
    with log_file.open("a", encoding="utf-8") as sink:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        last = ""
        for line in process.stdout:
            sink.write(line)
            sys.stderr.write(line)
            last = line.strip() or last
        code = process.wait()
    if code in (130, 143, -2, -15):  # Ctrl-C or SIGTERM reached the training too: it stopped at a step
        raise KeyboardInterrupt
    if code == 2:
        raise ConfigError(
            f"training {stage.student} on {stage.training_set}: {last.removeprefix('skillmix: error: ')}"
        )
    if code != 0:
        raise RunFailed(
            f"training {stage.student} on {stage.training_set} failed (exit {code}); see {log_file}"
        )
