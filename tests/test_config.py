"""Typed configuration: presets and flags with wrong types, unknown keys and out-of-range values.

Every error is one ``skillmix: error:`` line naming the file (or the flag) and the key, exit code 2, and
nothing is written.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from pydantic import BaseModel, ConfigDict, Field

from skillmix.cli import main
from skillmix.config import ConfigError, add_flags, build, merge, overrides
from skillmix.pipelines.config import DatasetConfig, build_config


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        ('client:\n  concurrency: "8"\n', "client.concurrency: input should be a valid integer, got str '8'"),
        ("client:\n  concurrency: 0\n", "client.concurrency: must be >= 1, got 0"),
        ("client:\n  max_usd: -5\n", "client.max_usd: must be > 0.0, got -5"),
        ("concurrency: 8\n", "concurrency: unknown key"),
        ("colour: blue\n", "colour: unknown key"),
        ("teacher:\n  modle: gpt-4o\n", "teacher.modle: unknown key"),
        ("teacher: gpt-4o\n", "teacher: input should be a valid dictionary or instance of ModelSettings"),
        ("teacher:\n  max_tokens: 0\n", "teacher.max_tokens: must be >= 1, got 0"),
        ("judge:\n  temperature: hot\n", "judge.temperature: input should be a valid number, got str 'hot'"),
        ("n: 2.5\n", "n: input should be a valid integer, got float 2.5"),
        ("n: 0\n", "n: must be >= 1, got 0"),
        ("k: [2, 2]\n", "k: K lists a value twice: [2, 2]"),
        (
            "judge:\n  temperature: 0\n",
            "judge.temperature 0 with grader_runs 3: the runs would be one greedy",
        ),
        ("k: 0\n", "k: K must be >= 1, got 0"),
        ("grader_format: xml\n", "grader_format: must be 'table' or 'json', got 'xml'"),
        ('name_penalty: "yes"\n', "name_penalty: input should be a valid boolean, got str 'yes'"),
        ("- k: 3\n", "expected a mapping of settings, got list"),
        ("k: [3\n", "invalid YAML"),
    ],
)
def test_bad_presets_are_one_line_naming_file_and_key(tmp_path, capsys, preset, message):
    path = tmp_path / "bad.yaml"
    path.write_text(preset)
    out = tmp_path / "out"
    assert main(["dataset", "--preset", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skillmix: error: preset {path}")
    assert message in lines[0]
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--concurrency", "0"], "--concurrency (client.concurrency): must be >= 1, got 0"),
        (["--max-usd", "-1"], "--max-usd (client.max_usd): must be > 0.0, got -1.0"),
        (["--teacher-max-tokens", "0"], "--teacher-max-tokens (teacher.max_tokens): must be >= 1, got 0"),
        (["--k", "2,x"], "--k (k): K must be an integer or a comma-separated list, got '2,x'"),
        (["--grader-runs", "0"], "--grader-runs (grader_runs): must be >= 1, got 0"),
    ],
)
def test_bad_flags_name_the_flag_and_the_key(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert main(["dataset", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"skillmix: error: {message}"] and not out.exists()


def test_a_bad_preset_from_the_shell_has_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text('client:\n  concurrency: "8"\n')
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "skillmix.cli", "dataset", "--preset", str(path), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"skillmix: error: preset {path}: client.concurrency: input should be a valid integer, got str '8'"
    ]


def test_flags_are_generated_from_the_model_and_override_the_preset(tmp_path):
    parser = argparse.ArgumentParser()
    flags = add_flags(parser, DatasetConfig, flatten=("client",), skip=("preset",))
    assert flags["concurrency"] == ("client", "concurrency")  # the client's flags carry no prefix
    assert flags["teacher_base_url"] == ("teacher", "base_url")
    assert "n_per_k" not in flags and "preset" not in flags  # mappings get no flag
    args = parser.parse_args(["--concurrency", "3", "--teacher-model", "m", "--no-name-penalty"])
    given = overrides(args, flags)
    assert given == {"client": {"concurrency": 3}, "teacher": {"model": "m"}, "name_penalty": False}
    preset = tmp_path / "p.yaml"
    preset.write_text("client:\n  concurrency: 9\n  max_usd: 2.5\nteacher:\n  max_tokens: 77\n")
    config = build_config(str(preset), given, flags)
    assert config.client.concurrency == 3 and config.client.max_usd == 2.5  # flag wins, preset survives
    assert config.teacher.model == "m" and config.teacher.max_tokens == 77 and config.name_penalty is False
    assert build_config(str(preset)).client.concurrency == 9 and build_config().client.concurrency == 8


def test_the_generic_pieces():
    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        size: int = Field(1, ge=1)

    class Outer(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        inner: Inner = Field(default_factory=Inner)
        name: str = "x"

    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": None, "c": 3}, "d": None}) == {
        "a": {"b": 1, "c": 3},
        "d": 1,
    }
    assert build(Outer, {"inner": {"size": 2}}, "recipe r.yaml").inner.size == 2
    with pytest.raises(ConfigError, match=r"^recipe r.yaml: inner.size: must be >= 1, got 0$"):
        build(Outer, {"inner": {"size": 0}}, "recipe r.yaml")
    with pytest.raises(ConfigError, match=r"^--inner-size \(inner.size\): must be >= 1, got 0$"):
        build(Outer, {"inner": {"size": 0}}, "flags", {"inner_size": ("inner", "size")})


def test_the_dataset_and_the_evaluation_share_one_protocol_and_one_k_rule(tmp_path):
    """One base model: the evaluation takes the dataset's rule for k (a repeated k is refused), and a
    dataset preset gives an evaluation its protocol but not what it draws (k, seed)."""
    from skillmix.evaluation.config import EvalConfig, build_eval_config
    from skillmix.pipelines.config import DatasetConfig, ProtocolConfig

    assert issubclass(DatasetConfig, ProtocolConfig) and issubclass(EvalConfig, ProtocolConfig)
    with pytest.raises(ConfigError, match=r"k: K lists a value twice: \[3, 3\]"):
        build_eval_config(overrides={"k": "3,3", "judge": {"model": "j"}})
    assert build_eval_config(overrides={"k": "4,2", "judge": {"model": "j"}}).k == [4, 2]
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "k: [1, 2]\nseed: 7\nn: 5\ngrader_runs: 5\nteacher: {model: t, base_url: 'http://x/v1'}\n"
    )
    config = build_eval_config(str(preset))
    assert config.grader_runs == 5 and config.k == [2, 3, 4, 5] and config.seed == 0
    assert (config.judge.model, config.judge.base_url) == ("t", "http://x/v1")  # the teacher judges
