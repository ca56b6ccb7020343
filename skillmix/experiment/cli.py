"""``skillmix experiment run FILE [--plan]``: one experiment file, every stage (``make reproduce``).

    skillmix experiment run experiments/paper.yaml --plan        # stages, requests, dollars, GPU-hours
    skillmix experiment run experiments/smoke.yaml \\
        [--teacher-model M --teacher-base-url URL --judge-model M --judge-base-url URL] [--out DIR]

The same command after a crash, a Ctrl-C or an edit re-runs only the stages whose inputs changed
(:mod:`skillmix.experiment.stages`). Bad input, or an experiment that cannot finish here (no key, no GPU,
an evaluation set the training data leaks into): one ``skillmix: error:`` line, exit code 2, before the
first paid request.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_experiment_parsers(sub: Any) -> None:
    from skillmix.experiment.config import add_experiment_flags

    ex = sub.add_parser(
        "experiment",
        help="run an experiment file: experiment run FILE [--plan]",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.set_defaults(func=cmd_experiment)
    actions = ex.add_subparsers(dest="action", metavar="action", title="actions")

    run = actions.add_parser(
        "run",
        help="every stage of an experiment, or its plan",
        description="skillmix experiment run FILE [--plan]: every stage of the experiment; the same command "
        "again re-runs only the stages whose inputs changed.",
    )
    run.add_argument("file", help="an experiment YAML (experiments/paper.yaml, experiments/smoke.yaml)")
    run.add_argument("--plan", action="store_true", help="print every stage and what it costs, run nothing")
    add_experiment_flags(run)
    run.set_defaults(func=cmd_run)


def cmd_experiment(args: argparse.Namespace) -> None:
    from skillmix.config import ConfigError

    raise ConfigError("skillmix experiment needs an action: run (skillmix experiment run FILE [--plan])")


def cmd_run(args: argparse.Namespace) -> None:
    from skillmix.experiment.config import build_experiment
    from skillmix.experiment.runner import run_experiment

    run_experiment(build_experiment(args.file, args), plan=args.plan)
