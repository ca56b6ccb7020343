"""``skillmix eval``: the Skill-Mix(k) evaluation of a student model, and its two offline companions.

    skillmix eval --student-model NAME [--student-base-url URL] --judge-model NAME [--judge-base-url URL]
                  --k 2,3,4,5 --setting train,held-out,all --n 100 [--generations 3] [--grader-runs 3]
                  [--eval-set REPO_OR_FOLDER[@REVISION]] [--seed 0] [--no-name-penalty] --out DIR
                  [--config FILE] [--push-results ORG/MODEL [--results-repo ORG/NAME]]
    skillmix eval rescore DIR [--no-name-penalty] [--no-length-override]
    skillmix eval compare DIR_A DIR_B ... --out CMP [--allow-different FIELD ...]
    skillmix eval import-inspect LOG OUT

``make eval MODEL=... K=2,3,4,5 SETTING=held-out N=100 OUT=...`` runs the first. Settings come from, in
order of precedence: the flags, ``--config FILE`` (an evaluation YAML, or a ``skillmix dataset`` preset whose
judge and grading protocol are then shared), the defaults of :class:`skillmix.evaluation.config.EvalConfig`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_eval_parsers(sub: Any) -> None:
    """``skillmix eval`` with its flags, and its actions ``rescore`` and ``compare`` nested under it."""
    from skillmix.evaluation.config import add_eval_flags

    ev = sub.add_parser(
        "eval",
        help="evaluate a student on Skill-Mix(k); eval rescore, eval compare",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # required without an action (cmd_eval says so as argparse would): `eval rescore DIR` takes no --out
    ev.add_argument(
        "--out", help="the evaluation folder (resumed if it holds this evaluation); required with no action"
    )
    ev.add_argument("--config", default=None, help="an evaluation YAML or a `skillmix dataset` preset")
    ev.add_argument("--chat-template", dest="student_chat_template", default=None,
                    help="alias of --student-chat-template")  # fmt: skip
    ev.add_argument("--push-results", default=None, metavar="ORG/MODEL",
                    help="add the results to this model's card (model-index)")  # fmt: skip
    ev.add_argument("--results-repo", default=None, metavar="ORG/NAME",
                    help="with --push-results: upload the folder to this dataset repo")  # fmt: skip
    ev.set_defaults(func=cmd_eval, flags=add_eval_flags(ev), usage_error=ev.error)
    actions = ev.add_subparsers(dest="action", metavar="action", title="actions", action=ActionFirst,
                                description="right after eval; without one, the evaluation runs")  # fmt: skip
    _rescore_parser(actions)
    _compare_parser(actions)
    _import_parser(actions)


class ActionFirst(argparse._SubParsersAction):
    """The actions of ``skillmix eval``: a flag of the evaluation itself given before one is refused, since
    the action would ignore it (``skillmix eval --k 3 rescore DIR``: exit code 2). Every flag of
    ``skillmix eval`` defaults to ``None``, so a value that is not ``None`` was given."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        given = {a.dest: a.option_strings[0] for a in parser._actions
                 if a.option_strings and getattr(namespace, a.dest, None) is not None}  # fmt: skip
        if given:
            parser.error(
                f"{', '.join(given.values())}: a flag of skillmix eval, not of skillmix eval {values[0]} "
                "(an action comes right after eval)"
            )
        super().__call__(parser, namespace, values, option_string)


def _rescore_parser(actions: Any) -> None:
    from skillmix.rules import UNPARSEABLE

    rs = actions.add_parser(
        "rescore",
        help="recompute an evaluation folder's results, no request",
        description="skillmix eval rescore DIR: the results again from the folder's grades; nothing sent.",
    )
    rs.add_argument("dir", help="an evaluation folder")
    rs.add_argument("--name-penalty", action=argparse.BooleanOptionalAction, default=None)
    rs.add_argument("--length-override", action=argparse.BooleanOptionalAction, default=None)
    rs.add_argument("--unparseable", choices=UNPARSEABLE, default=None,
                    help="a generation none of whose grades parsed: scored 0, or left out")  # fmt: skip
    rs.set_defaults(func=cmd_rescore)


def _compare_parser(actions: Any) -> None:
    cmp = actions.add_parser(
        "compare",
        help="compare evaluation folders (the first is the baseline)",
        description="skillmix eval compare DIR_A DIR_B ... --out CMP: the evaluations side by side.",
    )
    cmp.add_argument("dirs", nargs="+", help="evaluation folders; the first is the baseline")
    cmp.add_argument("--out", required=True, help="folder for comparison.md, comparison.json, plots/")
    cmp.add_argument(
        "--allow-different",
        action="append",
        default=[],
        metavar="FIELD",
        help="compare although this protocol field differs, as the refusal names it (e.g. judge, "
        "judge_temperature, eval_set); repeatable",
    )
    cmp.set_defaults(func=cmd_compare)


def _import_parser(actions: Any) -> None:
    imp = actions.add_parser(
        "import-inspect",
        help="an inspect log of skillmix/skill_mix as an evaluation folder",
        description="skillmix eval import-inspect LOG OUT: a folder eval compare and rescore read.",
    )
    imp.add_argument("log", help="an inspect_ai log (.eval or .json) of `inspect eval skillmix/skill_mix`")
    imp.add_argument("out", help="a new evaluation folder")
    imp.set_defaults(func=cmd_import_inspect)


def cmd_eval(args: argparse.Namespace) -> None:
    from skillmix.config import ConfigError, overrides
    from skillmix.evaluation.config import build_eval_config
    from skillmix.evaluation.run import run_eval

    if args.out is None:  # as argparse says it of a required flag (the usage, then this line; exit code 2)
        args.usage_error("the following arguments are required: --out")
    if args.results_repo and not args.push_results:
        raise ConfigError("--results-repo goes with --push-results ORG/MODEL")
    config = build_eval_config(args.config, overrides(args, args.flags), args.flags)
    results = run_eval(config, args.out, log=lambda m: print(m, file=sys.stderr))
    print(summary(results, args.out))
    errored = results.get("errored") or []
    if errored:
        from skillmix.pipelines.output import RunFailed

        shown = ", ".join(errored[:5]) + (f" and {len(errored) - 5} more" if len(errored) > 5 else "")
        raise RunFailed(
            f"{len(errored)} generations errored (the infrastructure, not the student: {shown}); they are "
            "left out of the results above. Run the same command again to retry only those"
        )
    if args.push_results:
        from skillmix.evaluation.hub import push_results

        pushed = push_results(Path(args.out), args.push_results, args.results_repo)
        for key, value in pushed.items():
            print(f"  {key}: {value}")


def cmd_rescore(args: argparse.Namespace) -> None:
    from skillmix.evaluation.outputs import rescore

    results = rescore(Path(args.dir), name_penalty=args.name_penalty, length_override=args.length_override,
                      unparseable=args.unparseable)  # fmt: skip
    print(summary(results, args.dir))


def cmd_import_inspect(args: argparse.Namespace) -> None:
    from skillmix.evaluation.inspect_log import import_inspect

    results = import_inspect(Path(args.log), Path(args.out))
    print(summary(results, args.out))


def cmd_compare(args: argparse.Namespace) -> None:
    from skillmix.evaluation.report import write_comparison

    write_comparison([Path(d) for d in args.dirs], Path(args.out), allow=args.allow_different)
    print((Path(args.out) / "comparison.md").read_text(encoding="utf-8"))


NOTED = ("failed_generations", "errored_generations", "unparseable_grades", "ungraded_generations",
         "judge_errors", "not_run", "excluded")  # fmt: skip


def summary(results: dict[str, Any], out: str | Path) -> str:
    """A few lines for the terminal: one per (setting, k), then where the files are."""
    lines = [f"Skill-Mix evaluation of {results['student'].get('model') or 'the embedded model'} "
             f"(judge {results['judge']['model']}), in {out}:"]  # fmt: skip
    for r in results["results"]:
        cells = "  ".join(
            f"{name} {_cell(r[name])}" for name in ("full_marks", "all_skills", "skill_fraction")
        )
        notes = [f"{r[key]} {key.replace('_', ' ')}" for key in NOTED if r.get(key)]
        lines.append(
            f"  {r['setting']:<9} k={r['k']}  n={r['n']:<4} {cells}"
            + (f"  ({', '.join(notes)})" if notes else "")
        )
    cost = results.get("cost_usd", 0)
    paid = "every request of these samples, at what it cost when paid, by this run or an earlier one"
    spent = f"cost ${cost:.4f} ({paid})" if cost is not None else "no cost recorded (see the inspect log)"
    lines.append(f"  {spent}; results.md, results.json, samples.jsonl, plots/")
    return "\n".join(lines)


def _cell(summary: dict[str, float | None]) -> str:
    mean, stderr = summary.get("mean"), summary.get("stderr")
    if mean is None:
        return "—"
    return f"{mean:.2f}" + (f"±{stderr:.2f}" if stderr is not None else "")
