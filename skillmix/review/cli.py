"""``skillmix review push`` and ``skillmix review pull``: human review of a dataset folder in Argilla.

    skillmix review push --data FOLDER --dataset NAME [--workspace skillmix] [--n 100] [--seed 0]
                         [--two-annotators 0.2] [--show-judge 0]
    skillmix review pull --data FOLDER --dataset NAME --out NEW_FOLDER [--workspace skillmix] [--seed 0]

The server and the key come from ``ARGILLA_API_URL`` and ``ARGILLA_API_KEY`` (``export $(make -s
argilla)`` for a local one). ``make review-push DATA=... DATASET=... [N=100]`` and ``make review-pull
DATA=... DATASET=... OUT=...`` run them. Bad input: one line ``skillmix: error: ...``, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


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
    rv.set_defaults(func=cmd_review)
    actions = rv.add_subparsers(dest="action", metavar="action", title="actions")

    push = actions.add_parser(
        "push",
        help="send a sample of graded rows to Argilla",
        description="skillmix review push: send a stratified sample of a folder's graded rows to Argilla.",
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
    push.add_argument(
        "--show-judge",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of the records that show the judge's answers pre-filled, for a fast correction pass; "
        "they are reported apart and never measure agreement (default 0: blind)",
    )
    push.set_defaults(func=cmd_push)

    pull = actions.add_parser(
        "pull",
        help="agreement, and a reviewed folder",
        description="skillmix review pull: the agreement figures, and a new folder where the human decisions "
        "override the judge.",
    )
    _common(pull)
    pull.add_argument("--out", required=True, help="the new folder to write (must not exist, or be empty)")
    pull.set_defaults(func=cmd_pull)


def cmd_review(args: argparse.Namespace) -> None:
    from skillmix.review.connect import ReviewError

    raise ReviewError("skillmix review needs an action: push or pull (see skillmix review push --help)")


def cmd_push(args: argparse.Namespace) -> None:
    from skillmix.review.push import push

    result = push(
        args.data,
        args.dataset,
        workspace=args.workspace,
        n=args.n,
        seed=args.seed,
        two_annotators=args.two_annotators,
        show_judge=args.show_judge,
        log=lambda m: print(m, file=sys.stderr),
    )
    shown = (
        "blind: no record shows the judge's answers"
        if not result.shown
        else f"{result.shown} records show the judge's answers (not measured), the others are blind"
    )
    print(
        f"{result.dataset} (workspace {result.workspace}): {result.sampled} rows sampled, "
        f"{result.added} added, {result.already} already there; {result.two_annotators} for two annotators "
        f"(min_submitted {result.min_submitted}); {shown}"
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
    if c["shown"]:
        changed = review["shown"]["changed"]
        print(f"  {c['shown']} records showed the judge's answers: decided, not measured ({changed} changed)")
    figures = review["agreement"]
    print(
        f"Agreement on the {c['blind']} blind records, weighted to the dataset by stratum "
        "(unweighted in brackets), 95% intervals from a bootstrap over records:"
    )
    for item in ("full_marks", "skills", "on_topic", "makes_sense", "within_length"):
        judge, human = figures["judge_human"][item], figures["human_human"][item]
        print(f"  {item:<14} judge~human {_cell(judge)}   human~human {_cell(human)}")
    print(f"  {'sentence count':<14} counter~human {_cell(figures['counter_human']['within_length'])}")
    precision = figures["judge_precision_kept"]
    print(
        f"  judge precision on kept rows: {_share(precision['weighted'])} "
        f"[{_share(precision['unweighted'])}] (n={precision['n']})"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _interval(ci: list[float] | None) -> str:
    return "" if ci is None else f" ({ci[0]:.2f}-{ci[1]:.2f})"


def _share(figure: dict[str, Any]) -> str:
    return _number(figure["share"]) + _interval(figure["ci"])


def _cell(figure: dict[str, Any]) -> str:
    w, u = figure["weighted"], figure["unweighted"]
    return (
        f"kappa {_number(w['kappa'])}{_interval(w['kappa_ci'])} [{_number(u['kappa'])}], "
        f"agreement {_number(w['raw'])} [{_number(u['raw'])}] (n={figure['n']})"
    )
