"""How a command ends when it raises: the project's bad-input errors are one line and exit code 2, a run
that could not finish is one line and exit code 1, anything else (CUDA out of memory, a bug) is its
traceback and exit code 1 (``skillmix.errors``), in ``skillmix`` and in the training script."""

from __future__ import annotations

import importlib

import pytest

from skillmix import cli, errors
from skillmix.config import ConfigError
from skillmix.pipelines.output import RunFailed


@pytest.mark.parametrize(
    ("names", "base"), [(errors.BAD_INPUT, ValueError), (errors.FAILED_RUN, RuntimeError)]
)
def test_every_named_error_is_a_class_of_its_kind(names, base):
    for name in sorted(names):
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        assert isinstance(cls, type) and issubclass(cls, base), name
        assert f"{cls.__module__}.{cls.__qualname__}" == name  # defined there, not re-exported


def raising(exc: BaseException):
    def load_catalog(*args, **kwargs):
        raise exc

    return load_catalog


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ValueError("a library's own ValueError"),  # not the project's: no longer read as bad input
        KeyError("skill"),
    ],
)
def test_an_unexpected_error_prints_its_traceback_and_exits_1(monkeypatch, capsys, exc):
    monkeypatch.setattr(cli, "load_catalog", raising(exc))
    assert cli.main(["catalog"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):"), err
    assert "in load_catalog" in err and err.rstrip().endswith(f"{type(exc).__name__}: {exc}")
    assert "skillmix: error:" not in err


def test_a_project_error_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_catalog", raising(ConfigError("--catalog x.csv: no such file")))
    assert cli.main(["catalog"]) == 2
    assert capsys.readouterr().err == "skillmix: error: --catalog x.csv: no such file\n"
    from skillmix.catalog import CatalogError
    from skillmix.sampling import SamplingError

    for exc in (CatalogError("bad skills file"), SamplingError("too many combinations")):
        monkeypatch.setattr(cli, "load_catalog", raising(exc))
        assert cli.main(["catalog"]) == 2
        assert capsys.readouterr().err == f"skillmix: error: {exc}\n"
    monkeypatch.setattr(cli, "load_catalog", raising(RunFailed("3 rows missing: the folder is unchanged")))
    assert cli.main(["catalog"]) == 1
    assert capsys.readouterr().err == "skillmix: error: 3 rows missing: the folder is unchanged\n"


def test_the_training_script_raises_what_is_not_bad_input(monkeypatch, capsys):
    from skillmix.training import cli as train_cli

    def train(exc):
        def cmd_train(args):
            raise exc

        return cmd_train

    monkeypatch.setattr(train_cli, "cmd_train", train(RuntimeError("NCCL error: unhandled system error")))
    with pytest.raises(RuntimeError, match="NCCL"):
        train_cli.main(["--config", "recipe.yaml"])
    monkeypatch.setattr(
        train_cli, "cmd_train", train(ConfigError("recipe.yaml: max_steps: must be >= 1, got 0"))
    )
    assert train_cli.main(["--config", "recipe.yaml"]) == 2
    assert capsys.readouterr().err == "skillmix: error: recipe.yaml: max_steps: must be >= 1, got 0\n"


def test_a_chat_template_without_a_student_model_is_one_line(tmp_path, capsys):
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    out = tmp_path / "X"
    assert cli.main(["eval", "--chat-template", str(template), "--judge-model", "j", "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "skillmix: error: --chat-template needs --student-model (a local checkpoint or Hub id)"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        # plain ValueErrors once, bad input only through the broad catch: now ConfigErrors where checked
        (["dataset", "--dry-run", "--prices", "{prices}", "--out", "{out}"], "{prices}: expected a mapping"),
        (["eval", "rescore", "{folder}"], "{folder}/results.json does not load"),
    ],
)
def test_a_bad_prices_file_or_evaluation_folder_is_still_one_line(tmp_path, capsys, argv, says):
    names = {"prices": tmp_path / "prices.yaml", "folder": tmp_path / "not-an-eval", "out": tmp_path / "out"}
    names["prices"].write_text("- not a mapping\n")
    names["folder"].mkdir()
    code = cli.main([arg.format(**names) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("skillmix: error: " + says.format(**names)), err
    assert not names["out"].exists()
