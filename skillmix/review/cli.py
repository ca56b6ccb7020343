"""``skillmix review push`` and ``skillmix review pull``: human review of a dataset folder in Argilla.

    skillmix review push --data FOLDER --dataset NAME [--workspace skillmix] [--n 100] [--seed 0]
                         [--two-annotators 0.2]
    skillmix review pull --data FOLDER --dataset NAME --out NEW_FOLDER [--workspace skillmix] [--seed 0]

The server and the key come from ``ARGILLA_API_URL`` and ``ARGILLA_API_KEY`` (``export $(make -s
argilla)`` for a local one). ``make review-push DATA=... DATASET=... [N=100]`` and ``make review-pull
DATA=... DATASET=... OUT=...`` run them. Bad input: one line ``skillmix: error: ...``, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

ACTIONS = ("push", "pull")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a dataset folder made by `skillmix dataset`")
    parser.add_argument("--dataset", required=True, help="the Argilla dataset's name")
    parser.add_argument("--workspace", default="skillmix", help="the Argilla workspace (default skillmix)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample / the bootstrap (default 0)")


def add_review_parsers(sub: Any) -> None:
    rv = sub.add_parser(
        "review",
        help="human review in Argilla: review push, review pull",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rv.add_argument("action", choices=ACTIONS, help="push a sample, or pull the answers")
    rv.set_defaults(func=cmd_review)

    push = sub.add_parser(
        "review-push", help="(skillmix review push) send a sample of graded rows to Argilla"
    )
    _common(push)
    push.add_argument("--n", type=int, default=100, help="rows to sample, stratified (default 100)")
    push.add_argument(
        "--two-annotators",
        type=float,
        default=0.2,
        metavar="SHARE",
        help="share of the records reviewed by two annotators (default 0.2)",
    )
    push.set_defaults(func=cmd_push)

    pull = sub.add_parser("review-pull", help="(skillmix review pull) agreement, and a reviewed folder")
    _common(pull)
    pull.add_argument("--out", required=True, help="the new folder to write (must not exist, or be empty)")
    pull.set_defaults(func=cmd_pull)


def cmd_review(args: argparse.Namespace) -> None:
    from skillmix.review.connect import ReviewError

    raise ReviewError(f"run `skillmix review {args.action} ...` (see skillmix review-{args.action} --help)")


def cmd_push(args: argparse.Namespace) -> None:
    from skillmix.review.push import push

    result = push(
        args.data,
        args.dataset,
        workspace=args.workspace,
        n=args.n,
        seed=args.seed,
        two_annotators=args.two_annotators,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(
        f"{result.dataset} (workspace {result.workspace}): {result.sampled} rows sampled, "
        f"{result.added} added, {result.already} already there; {result.two_annotators} for two annotators "
        f"(min_submitted {result.min_submitted})"
    )
    for stratum, rows in result.strata.items():
        print(f"  {stratum:<28} {rows:>5}")
    print(f"annotate at {result.url}")


def cmd_pull(args: argparse.Namespace) -> None:
    from skillmix.review.pull import pull

    result = pull(args.data, args.dataset, args.out, workspace=args.workspace, seed=args.seed)
    review = result.review
    c = review["counts"]
    print(
        f"{c['reviewed']} rows reviewed ({c['two_annotators']} by two annotators), {c['to_kept']} moved to "
        f"kept, {c['to_rejected']} to rejected; written to {result.out}"
    )
    figures = review["agreement"]
    for item in ("full_marks", "skills", "on_topic", "makes_sense", "within_length"):
        judge, human = figures["judge_human"][item], figures["human_human"][item]
        print(f"  {item:<14} judge~human {_cell(judge)}   human~human {_cell(human)}")
    precision = figures["judge_precision_kept"]
    share = "n/a" if precision["share"] is None else f"{precision['share']:.2f}"
    print(f"  judge precision on kept rows: {share} (n={precision['n']})")


def _cell(figure: dict[str, Any]) -> str:
    raw, kappa = figure["raw"], figure["kappa"]
    raw_text = "n/a" if raw is None else f"{raw:.2f}"
    kappa_text = "n/a" if kappa is None else f"{kappa:.2f}"
    return f"agreement {raw_text} kappa {kappa_text} (n={figure['n']})"
