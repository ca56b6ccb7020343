"""The shape of the command line: the top-level commands, each listed once; actions nested under their
command (``skillmix eval rescore``), ``skillmix eval`` alone still the evaluation; no abbreviated flag at any
depth; ``skillmix train``'s table of methods and its entry points. In-process; nothing trains or is sent."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from skillmix import cli
from skillmix.evaluation import cli as eval_cli
from skillmix.experiment import cli as experiment_cli
from skillmix.review import cli as review_cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("catalog", "sample", "prompts", "dataset", "publish", "download", "train", "eval", "review",
            "experiment", "batches", "doctor")  # fmt: skip
ACTIONS = {"eval": ("rescore", "compare", "import-inspect"), "review": ("push", "pull"),
           "experiment": ("run",), "batches": ("status", "cancel")}  # fmt: skip


def top_level_help(monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_lists_each_top_level_command_once_with_one_line(monkeypatch, capsys):
    out = top_level_help(monkeypatch, capsys)
    described: dict[str, list[str]] = {}  # command -> the lines of its description
    for line in out.split("\ncommands:\n", 1)[1].splitlines():
        if re.match(r"^ {4}\S", line):
            command, _, text = line.strip().partition(" ")
            assert command not in described, f"{command} listed twice"
            described[command] = [text.strip()] if text.strip() else []
        elif described and line.strip():  # its description on the next line (a long name) or wrapped
            described[command].append(line.strip())
    assert list(described) == list(COMMANDS)
    assert {command: len(text) for command, text in described.items()} == dict.fromkeys(COMMANDS, 1)
    assert [f"{c}-{a}" for c, actions in ACTIONS.items() for a in actions if f"{c}-{a}" in out] == []


@pytest.mark.parametrize(
    ("argv", "func", "values"),
    [
        (["eval", "rescore", "d", "--no-name-penalty"], eval_cli.cmd_rescore,
         {"action": "rescore", "dir": "d", "name_penalty": False}),
        (["eval", "compare", "a", "b", "--out", "c", "--allow-different", "judge"], eval_cli.cmd_compare,
         {"action": "compare", "dirs": ["a", "b"], "out": "c", "allow_different": ["judge"]}),
        (["review", "push", "--data", "d", "--dataset", "n", "--n", "3"], review_cli.cmd_push,
         {"action": "push", "data": "d", "n": 3}),
        (["review", "pull", "--data", "d", "--dataset", "n", "--out", "o"], review_cli.cmd_pull,
         {"action": "pull", "out": "o"}),
        (["experiment", "run", "f.yaml", "--plan"], experiment_cli.cmd_run,
         {"action": "run", "file": "f.yaml", "plan": True}),
        (["batches", "status", "o"], cli.cmd_batches, {"action": "status", "out": "o"}),
        (["batches", "cancel", "o"], cli.cmd_batches, {"action": "cancel", "out": "o"}),
        # a flag's value that is an action's name is the flag's value
        (["eval", "--student-model", "compare", "--judge-model", "rescore", "--out", "compare"],
         eval_cli.cmd_eval, {"action": None, "student_model": "compare", "judge_model": "rescore",
                             "out": "compare"}),
        (["eval", "--student-model", "m", "--judge-model", "j", "--out", "d"], eval_cli.cmd_eval,
         {"action": None, "student_model": "m", "judge_model": "j", "out": "d", "name_penalty": None}),
    ],
)  # fmt: skip
def test_each_form_parses_to_its_function(argv, func, values):
    args = cli.build_parser().parse_args(argv)
    assert args.func is func
    assert {key: getattr(args, key) for key in values} == values


def argparse_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["eval", "--judge-model", "j"], "skillmix eval: error: the following arguments are required: --out"),
        (["eval", "--k", "3", "rescore", "d"], "skillmix eval: error: --k: a flag of skillmix eval, not of "
         "skillmix eval rescore (an action comes right after eval)"),
        (["eval-rescore", "d"], "skillmix: error: argument command: invalid choice: 'eval-rescore'"),
        (["review", "publish"], "skillmix review: error: argument action: invalid choice: 'publish'"),
        (["eval", "rescore", "d", "--name", "x"], "skillmix: error: unrecognized arguments: --name x"),
        (["review", "push", "--data", "d", "--dataset", "n", "--two", "0.5"],
         "skillmix: error: unrecognized arguments: --two 0.5"),  # not --two-annotators
    ],
)  # fmt: skip
def test_argparse_refusals(argv, says, capsys):
    assert argparse_error(argv, capsys).startswith(says)


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("review", "push or pull (see skillmix review push --help)"),
        ("experiment", "run (skillmix experiment run FILE [--plan])"),
        ("batches", "status or cancel (skillmix batches status OUT)"),
    ],
)
def test_a_command_without_its_action_is_one_line(command, says, capsys):
    assert cli.main([command]) == 2
    assert capsys.readouterr().err == f"skillmix: error: skillmix {command} needs an action: {says}\n"


def test_no_parser_takes_an_abbreviation():
    parsers = list(cli.parsers(cli.build_parser()))
    assert len(parsers) == 1 + len(COMMANDS) + sum(map(len, ACTIONS.values()))
    assert [p.prog for p in parsers if p.allow_abbrev] == []


def test_train_dispatches_through_its_table(monkeypatch, capsys):
    from skillmix.training import cli as train_cli
    from skillmix.training import dpo, grpo, sft
    from skillmix.training.config import TrainConfig

    assert set(train_cli.METHODS) == set(typing.get_args(TrainConfig.model_fields["method"].annotation))
    assert {name: load() for name, load in train_cli.METHODS.items()} == {
        "sft": sft.run, "dpo": dpo.run, "grpo": grpo.run
    }  # fmt: skip
    modules = {"sft": sft, "dpo": dpo, "grpo": grpo}
    assert all(load() is modules[name].run for name, load in train_cli.METHODS.items())
    ran = []
    monkeypatch.setitem(train_cli.METHODS, "dpo", lambda: lambda config, log: ran.append(config.method))
    assert cli.main(["train", "--config", "tiny/dpo", "--max-steps", "2"]) == 0
    assert ran == ["dpo"]


def test_the_command_line_imports_no_method_before_it_runs():
    methods = ("skillmix.training.sft", "skillmix.training.dpo", "skillmix.training.grpo")
    code = (
        "import sys; from skillmix.cli import build_parser; build_parser(); print(sorted(m for m in "
        f"sys.modules if m.split('.')[0] in ('torch', 'trl', 'transformers') or m in {methods!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


@pytest.mark.parametrize(
    "run",
    [
        lambda: runpy.run_module("skillmix.training", run_name="__main__"),  # python -m skillmix.training
        lambda: runpy.run_module("skillmix.training.sft", run_name="__main__"),  # make train's before
        lambda: runpy.run_path(str(ROOT / "training" / "sft.py"), run_name="__main__"),  # accelerate launch
    ],
    ids=["package", "sft-module", "sft-file"],
)
def test_every_training_entry_is_the_train_command(run, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "skillmix.training.sft", raising=False)  # as in a fresh process
    monkeypatch.setattr(sys, "argv", ["entry", "--config", "tiny/dpo", "--plan"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as info:
        run()
    assert info.value.code == 0
    assert "method: dpo" in capsys.readouterr().out.splitlines()


def test_every_command_line_in_the_readme_and_the_docs_parses():
    """Each ``skillmix ...`` line of a shell block in README.md and docs/ parses with today's parser (the
    optional parts written in brackets left out): a renamed command or flag cannot leave the docs behind."""
    import contextlib
    import io
    import shlex

    from skillmix.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    parser, lines = build_parser(), []
    for page in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", page.read_text(), flags=re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = re.sub(r"\[[^\]]*\]|\.\.\.", "", line.split(" #")[0]).strip()
                if line.startswith("skillmix "):
                    lines.append((page.name, line))
    assert len(lines) >= 20
    for page, line in lines:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                parser.parse_args(shlex.split(line)[1:])
            except SystemExit as exc:
                assert not exc.code, f"{page}: {line}: {err.getvalue().strip()}"
