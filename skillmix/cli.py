"""The ``skillmix`` command line: one command per stage, some with actions of their own.

    skillmix catalog [--catalog PATH] [--topics PATH]        # counts per category, hash
    skillmix catalog --split [--seed 0] [--json]             # the train/held-out split with its hashes
    skillmix sample --k 3 --n 10 [--setting train] [--seed 0] [--jsonl]
    skillmix prompts --k 3 [--seed 0] [--grader table|json]  # the prompts of one sampled combination
    skillmix dataset | publish | download | doctor ...       # build, release, fetch; is this machine ready
    skillmix train --config RECIPE ...                       # TRL: SFT, DPO or GRPO (skillmix.training.cli)
    skillmix eval --student-model M --judge-model J --out D  # the evaluation (skillmix.evaluation.cli)
    skillmix eval rescore DIR | eval compare DIR ... --out C # its actions: no request sent
    skillmix review push ... | review pull ...               # Argilla (skillmix.review.cli)
    skillmix experiment run FILE [--plan]                    # every stage (skillmix.experiment.cli)
    skillmix batches status OUT | batches cancel OUT         # the provider batches a folder sent

An action is a nested subcommand (``skillmix review push``); ``skillmix eval`` alone runs the evaluation,
``review``, ``experiment`` and ``batches`` alone end with one line naming their actions. No parser takes a
prefix of a flag for the flag (``allow_abbrev=False`` everywhere).

Bad input ends with a one-line ``skillmix: error: ...`` on stderr and exit code 2, never a traceback; a run
that could not finish (:data:`skillmix.errors.FAILED_RUN`) with one line and exit code 1; a run that
stopped for batch files to be run elsewhere (``--batch-files``) with the commands to run and exit code 75.
Only the project's own error types are bad input (:data:`skillmix.errors.BAD_INPUT`): any other exception
(CUDA out of memory, an NCCL error, a bug) prints its traceback and exits with code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from skillmix.catalog import CATEGORIES, Catalog, load_catalog
from skillmix.errors import EXIT_OUTSIDE_WORK, is_bad_input, is_failed_run, is_outside_work
from skillmix.sampling import SETTINGS, sample_combinations


def _add_catalog_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default="builtin", help="builtin, or a skills CSV/YAML/JSON file")
    parser.add_argument("--topics", default=None, help="a topics file overriding the catalog's topics")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the topic split (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skillmix", description="Skill-Mix datasets: build, grade, evaluate.", allow_abbrev=False
    )
    # metavar: the usage names no command (the list below names each once); "command" as the errors said
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", title="commands")
    for add in (_catalog_parser, _sample_parser, _prompts_parser, _dataset_parser, _publish_parser,
                _download_parser, _train_parser, _eval_parser, _review_parser, _experiment_parser,
                _batches_parser, _doctor_parser):  # fmt: skip
        add(sub)
    for command in parsers(parser):  # a prefix of a longer flag never selects it (--batch: not --batch-size)
        command.allow_abbrev = False
    return parser


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser nested under it (commands, their actions)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in dict.fromkeys(action.choices.values()):
                yield from parsers(nested)


def _catalog_parser(sub: Any) -> None:
    cat = sub.add_parser("catalog", help="show the skill/topic catalog or its train/held-out split")
    _add_catalog_args(cat)
    cat.add_argument("--split", action="store_true", help="print the train/held-out split and its hashes")
    cat.add_argument("--seed", type=int, default=None, help="alias of --split-seed")
    cat.add_argument("--json", action="store_true", help="machine-readable output")
    cat.set_defaults(func=cmd_catalog)


def _sample_parser(sub: Any) -> None:
    sam = sub.add_parser("sample", help="draw balanced (k skills, topic) combinations")
    _add_catalog_args(sam)
    sam.add_argument("--k", type=int, required=True)
    sam.add_argument("--n", type=int, default=None, help="number of combinations (default: all of them)")
    sam.add_argument("--setting", default="train", choices=SETTINGS)
    sam.add_argument("--seed", type=int, default=0)
    sam.add_argument("--jsonl", action="store_true", help="one JSON object per combination")
    sam.set_defaults(func=cmd_sample)


def _prompts_parser(sub: Any) -> None:
    pro = sub.add_parser("prompts", help="render the prompts of one sampled combination")
    _add_catalog_args(pro)
    pro.add_argument("--k", type=int, default=3)
    pro.add_argument("--setting", default="train", choices=SETTINGS)
    pro.add_argument("--seed", type=int, default=0)
    pro.add_argument("--grader", default="table", choices=("table", "json"))
    pro.set_defaults(func=cmd_prompts)


def _dataset_parser(sub: Any) -> None:
    from skillmix.pipelines.config import add_dataset_flags

    ds = sub.add_parser(
        "dataset",
        help="build D_SKILL-MIX(k) into a local folder (Hugging Face layout)",
        description="Each flag overrides the preset's value; a flag left out keeps it.",
    )
    ds.add_argument("--preset", default="smoke", help="smoke (default), paper, or a YAML file")
    ds.add_argument("--out", default="out", help="output folder (default ./out)")
    ds.add_argument("--dry-run", action="store_true", help="print the plan and its cost, send nothing")
    ds.set_defaults(func=cmd_dataset, flags=add_dataset_flags(ds))


def _publish_parser(sub: Any) -> None:
    pub = sub.add_parser("publish", help="push a dataset folder to the Hub as a tagged, versioned release")
    pub.add_argument("--repo", required=True, help="Hub dataset repo, org/name")
    pub.add_argument("--version", required=True, help="semantic version tag, e.g. v1.0.0")
    pub.add_argument("--data", default="out", help="folder made by `skillmix dataset` (default ./out)")
    pub.add_argument("--private", action="store_true", help="create the repo private (default public)")
    pub.add_argument("--force", action="store_true", help="replace an existing release of this version")
    pub.add_argument("--eval-n", type=int, default=100, help="evaluation combinations per setting and k")
    pub.set_defaults(func=cmd_publish)


def _train_parser(sub: Any) -> None:
    from skillmix.training.cli import add_train_parser

    add_train_parser(sub)


def _eval_parser(sub: Any) -> None:
    from skillmix.evaluation.cli import add_eval_parsers

    add_eval_parsers(sub)


def _review_parser(sub: Any) -> None:
    from skillmix.review.cli import add_review_parsers

    add_review_parsers(sub)


def _experiment_parser(sub: Any) -> None:
    from skillmix.experiment.cli import add_experiment_parsers

    add_experiment_parsers(sub)


BATCHES = {"status": "show the batches a folder sent", "cancel": "cancel those still running"}


def _batches_parser(sub: Any) -> None:
    bat = sub.add_parser(
        "batches",
        help="the provider batches of a folder: batches status, batches cancel",
        description="skillmix batches status OUT | skillmix batches cancel OUT: the batches a dataset or "
        "evaluation folder run with --teacher-batch/--judge-batch sent.",
    )
    bat.set_defaults(func=cmd_batches)
    actions = bat.add_subparsers(dest="action", metavar="action", title="actions")
    for action, text in BATCHES.items():
        parser = actions.add_parser(action, help=text, description=f"skillmix batches {action} OUT: {text}.")
        parser.add_argument(
            "out", help="a dataset or evaluation folder run with --teacher-batch/--judge-batch"
        )


def cmd_batches(args: argparse.Namespace) -> None:
    from skillmix.config import ConfigError
    from skillmix.pipelines.batches import cancel_lines, status_lines

    if args.action is None:
        raise ConfigError("skillmix batches needs an action: status or cancel (skillmix batches status OUT)")
    print("\n".join(status_lines(args.out) if args.action == "status" else cancel_lines(args.out)))


def _doctor_parser(sub: Any) -> None:
    from skillmix.doctor import add_doctor_parser

    add_doctor_parser(sub)


def _download_parser(sub: Any) -> None:
    dl = sub.add_parser("download", help="fetch a released version of a Hub dataset into a folder")
    dl.add_argument("--repo", required=True)
    dl.add_argument("--version", required=True)
    dl.add_argument("--out", required=True)
    dl.set_defaults(func=cmd_download)


def _catalog(args: argparse.Namespace) -> Catalog:
    return load_catalog(args.catalog, topics=args.topics)


def cmd_catalog(args: argparse.Namespace) -> None:
    catalog = _catalog(args)
    seed = args.seed if args.seed is not None else args.split_seed
    if not args.split:
        groups = catalog.by_category()
        if args.json:
            print(
                json.dumps(
                    {
                        "source": catalog.source,
                        "hash": catalog.hash,
                        "skills": {c: [s.name for s in g] for c, g in groups.items()},
                        "topics": list(catalog.topics),
                    },
                    indent=2,
                )
            )
            return
        print(f"catalog {catalog.source}: {len(catalog.skills)} skills, {len(catalog.topics)} topics")
        print(f"hash    {catalog.hash}")
        order = [c for c in CATEGORIES if c in groups] + sorted(c for c in groups if c not in CATEGORIES)
        for category in order:
            print(f"  {category:<20} {len(groups[category]):>3}")
        return
    split = catalog.split(seed)
    if args.json:
        print(json.dumps(split.to_dict(), indent=2, ensure_ascii=False))
        return
    n_train, n_held = len(split.training_skills), len(split.heldout_skills)
    print(f"catalog {catalog.source} ({catalog.hash[:16]}), split seed {seed}")
    print(f"skills  {n_train} training / {n_held} held-out   hash {split.skills_hash}")
    for title, skills in (("training", split.training_skills), ("held-out", split.heldout_skills)):
        print(f"  {title} skills:")
        for category in CATEGORIES:
            names = [s.name for s in skills if s.category == category]
            if names:
                print(f"    {category} ({len(names)}): {', '.join(names)}")
    print(
        f"topics  {len(split.training_topics)} training / {len(split.heldout_topics)} held-out"
        f"   hash {split.topics_hash}"
    )
    print(f"  training topics: {', '.join(split.training_topics)}")
    print(f"  held-out topics: {', '.join(split.heldout_topics)}")
    print(f"split hash {split.hash}")


def cmd_sample(args: argparse.Namespace) -> None:
    catalog = _catalog(args)
    draw = sample_combinations(
        catalog, args.k, args.n, setting=args.setting, seed=args.seed, split=catalog.split(args.split_seed)
    )
    for combo in draw:
        if args.jsonl:
            print(json.dumps(combo.to_dict(), ensure_ascii=False))
        else:
            print(f"{combo.id}  {combo.topic:<28} {' | '.join(s.name for s in combo.skills)}")
    usage = draw.skill_usage.values()
    print(
        f"{len(draw)} combinations, k={draw.k}, setting {draw.setting}, seed {draw.seed}; skill usage "
        f"min {min(usage)} max {max(usage)} (ratio {draw.usage_ratio:.2f}) over {len(draw.eligible_skills)}"
        f" skills; split {draw.split_hash[:16]}",
        file=sys.stderr,
    )


def cmd_prompts(args: argparse.Namespace) -> None:
    from skillmix.prompts import PromptSet

    catalog = _catalog(args)
    combo = sample_combinations(
        catalog, args.k, 1, setting=args.setting, seed=args.seed, split=catalog.split(args.split_seed)
    )[0]
    prompts = PromptSet()
    print("=== round 1\n" + prompts.round1(combo.skills, combo.topic))
    print("\n=== round 2\n" + prompts.round2(combo.k, combo.topic))
    placeholder = "<the text after the last 'Answer:' of round 2>"
    print(
        f"\n=== grader ({args.grader})\n"
        + prompts.grader(placeholder, combo.skills, combo.topic, args.grader)
    )


def cmd_dataset(args: argparse.Namespace) -> None:
    from skillmix.config import overrides
    from skillmix.pipelines.config import build_config
    from skillmix.pipelines.run import run_dataset
    from skillmix.pipelines.summary import summary_text

    config = build_config(args.preset, overrides(args, args.flags), args.flags)
    result = run_dataset(config, args.out, log=lambda m: print(m, file=sys.stderr), dry_run=args.dry_run)
    if result is None:
        return  # --dry-run: the plan is printed, nothing was sent or written
    if not result.written:
        print(f"{args.out} is already complete: this run changed nothing and paid nothing; the folder was "
              "left as it was", file=sys.stderr)  # fmt: skip
    manifest = json.loads((Path(args.out) / "manifest.json").read_text())
    print(summary_text(manifest, args.out))


def cmd_publish(args: argparse.Namespace) -> None:
    from skillmix.release.publish import publish

    result = publish(args.data, args.repo, args.version, private=args.private, force=args.force,
                     eval_n=args.eval_n, log=lambda m: print(m, file=sys.stderr))  # fmt: skip
    print(f"{result.repo_id} {result.version}: commit {result.commit}")
    for name, rows in result.configs.items():
        print(f"  {name:<16} {rows:>7} rows")
    print(f'load with: load_dataset("{result.repo_id}", "<config>", revision="{result.version}")')


def cmd_download(args: argparse.Namespace) -> None:
    from skillmix.release.publish import download

    print(download(args.repo, args.version, args.out))


def _hub_error_types() -> tuple[type[BaseException], ...]:
    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # the Hub extra is not installed
        return ()
    return (HfHubHTTPError,)


def main(argv: Sequence[str] | None = None) -> int:
    # distilabel 1.5.3 declares fields pydantic 2.14 warns about on every import; it is not the user's concern
    warnings.filterwarnings("ignore", message="The 'default' attribute with value None")
    # `kill -USR1 <pid>` prints every thread's stack to stderr, in this process and in the step processes
    # it forks (a C-level handler: it answers even when Python is stuck on a lock)
    with contextlib.suppress(AttributeError, OSError, ValueError):  # stderr without a file (a test's capture)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from skillmix.pipelines.interrupt import Interrupted, kill_children

    try:
        args.func(args)
    except Interrupted as exc:
        done = "" if exc.total is None else f"{exc.done} of {exc.total} rows done, "
        print(
            f"skillmix: interrupted: {done}nothing paid is lost; run the same command again to resume",
            file=sys.stderr,
        )
        if exc.hard:  # stopped inside distilabel: its threads and processes would not end by themselves
            kill_children()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        print("skillmix: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except _hub_error_types() as exc:
        print(f"skillmix: error: the Hub answered: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `skillmix sample ... | head`
        return 0
    except Exception as exc:
        return _error_exit(exc)
    return 0


def _error_exit(exc: Exception) -> int:
    """The exit code of a command that raised ``exc`` (see the module docstring), after saying why."""
    if is_outside_work(exc):  # the batch files to run elsewhere, then the same command again
        print(f"skillmix: {exc}", file=sys.stderr)
        return EXIT_OUTSIDE_WORK
    if is_bad_input(exc) or is_failed_run(exc):
        print(f"skillmix: error: {exc}", file=sys.stderr)
        return 2 if is_bad_input(exc) else 1
    traceback.print_exc()  # not bad input: a bug, or a crash below skillmix; the traceback explains it
    return 1


if __name__ == "__main__":
    sys.exit(main())
