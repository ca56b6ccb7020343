"""`skillmix doctor` against loopback servers (a fake OpenAI teacher, a dead judge, a fake Hub), and its
checks one by one where the real machine cannot be made to fail (package versions, Python, disk)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from skillmix import doctor
from skillmix.cli import build_parser
from skillmix.doctor import Check
from skillmix.processes import free_port
from skillmix.testing.fake_hub import FakeHubServer
from skillmix.testing.fake_openai import FakeOpenAIServer

TOKEN = "hf_doctorSecretToken0123456789abcdef"
DEAD_JUDGE = "http://127.0.0.1:9/v1"
NAMES = {"python", "numpy", "pydantic", "distilabel", "openai", "datasets", "huggingface-hub", "pyarrow",
         "torch", "transformers", "trl", "argilla", "embedded model", "teacher", "judge", "student", "hub",
         "disk"}  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    storage = tmp_path_factory.mktemp("hub")
    with FakeOpenAIServer() as teacher, FakeHubServer(token=TOKEN, storage=storage) as hub:
        yield SimpleNamespace(teacher=teacher, hub=hub)


def run_doctor(servers, tmp_path, *extra, argilla_url=None):
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_", "HUGGING", "ARGILLA_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HF_ENDPOINT=servers.hub.endpoint, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf_home"),
               HF_TOKEN=TOKEN, **({"ARGILLA_API_URL": argilla_url} if argilla_url else {}))  # fmt: skip
    cmd = [sys.executable, "-m", "skillmix.cli", "doctor", "--teacher-model", "fake-teacher",
           "--teacher-base-url", servers.teacher.base_url, "--judge-base-url", DEAD_JUDGE,
           *extra]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert TOKEN not in result.stdout + result.stderr
    assert TOKEN[3:12] not in result.stdout + result.stderr  # not even a piece of it
    return result


def test_text_report_names_each_server_and_its_fix(servers, tmp_path):
    out = tmp_path / "not" / "yet"
    result = run_doctor(servers, tmp_path, "--out", str(out), argilla_url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stdout + result.stderr  # network failures are not required checks
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["teacher"].startswith("ok") and servers.teacher.base_url in lines["teacher"]
    assert lines["judge"].startswith("fail") and DEAD_JUDGE in lines["judge"]
    assert "does not answer" in lines["judge"] and "fix:" in lines["judge"]
    assert "--judge-base-url" in lines["judge"].partition("fix:")[2]
    assert lines["argilla"].startswith("fail") and "make -s argilla" in lines["argilla"]
    assert lines["hub"].startswith("ok") and "token: set (from HF_TOKEN)" in lines["hub"]
    assert "user skillmix-tester" in lines["hub"] and servers.hub.endpoint in lines["hub"]
    assert lines["disk"].startswith("ok") and str(out) in lines["disk"] and str(tmp_path) in lines["disk"]
    assert lines["python"].startswith("ok")
    assert len({line.index(line.split()[1]) for line in lines.values()}) == 1  # the names are aligned


def test_json_has_every_check_and_skips_what_is_not_configured(servers, tmp_path):
    result = run_doctor(servers, tmp_path, "--json", "--student-model", "fake-teacher",
                        "--student-base-url", servers.teacher.base_url)  # fmt: skip
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == NAMES | {"argilla"}
    assert checks["argilla"]["status"] == "skip" and "make -s argilla" in checks["argilla"]["detail"]
    assert checks["student"]["status"] == "ok" and checks["judge"]["status"] == "fail"
    assert checks["judge"]["fix"] and not checks["python"]["fix"]
    assert report["ok"] is True and result.returncode == 0
    assert all(set(c) == {"name", "status", "detail", "fix", "required"} for c in report["checks"])


def test_a_bad_preset_is_one_error_line(servers, tmp_path):
    result = run_doctor(servers, tmp_path, "--preset", "nosuch")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("skillmix: error: unknown preset 'nosuch'")
    assert result.stderr.count("\n") == 1


def test_packages_against_the_installed_pins(monkeypatch):
    requires = ["numpy==2.4.6", 'trl==1.16.0; extra == "train"', 'datasets==5.2.0; extra == "pipeline"',
                'datasets==5.2.0; extra == "hub"', 'torch==2.13.0; extra == "train"']  # fmt: skip
    installed = {"numpy": "2.4.6", "datasets": "5.1.0", "torch": "2.13.0+cpu"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "requires", lambda dist: requires if dist == "skillmix" else None)
    monkeypatch.setattr(importlib.metadata, "version", version)
    names = ("numpy", "trl", "datasets", "torch", "argilla")
    numpy, trl, datasets, torch, argilla = doctor.check_packages(names)
    assert (numpy.status, numpy.required, numpy.bad) == ("ok", True, False)
    assert (trl.status, trl.fix, trl.required) == ("missing", "pip install -e '.[train]'", False)
    assert datasets.status == "fail" and "5.1.0 installed, pinned 5.2.0" in datasets.detail
    assert "pipeline, hub" in datasets.detail and datasets.fix == "pip install -e '.[pipeline]'"
    assert torch.status == "ok" and argilla.status == "skip"
    del installed["numpy"]  # a core package missing is a required check failing
    assert doctor.check_packages(("numpy",))[0].bad


def test_no_skillmix_distribution_is_a_required_failure(monkeypatch):
    def requires(dist):
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(importlib.metadata, "requires", requires)
    [check] = doctor.check_packages()
    assert check.bad and check.fix == "pip install -e ."


def test_python_version_and_low_disk(monkeypatch, tmp_path):
    assert doctor.check_python((3, 9, 18)).bad and not doctor.check_python((3, 10, 0)).bad
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1024**3))
    check = doctor.check_disk(tmp_path)
    assert (check.status, check.bad) == ("warn", False) and "1.0 GiB free in" in check.detail and check.fix


def test_an_openai_model_without_a_key_is_missing_per_role(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["doctor", "--teacher-model", "gpt-4o", "--judge-model", "gpt-4o-mini"])
    teacher, judge, student = (check() for check in doctor.model_checks(args))
    assert (teacher.name, teacher.status) == ("teacher", "missing") and "OPENAI_API_KEY" in teacher.fix
    assert (judge.name, judge.status) == ("judge", "missing") and "gpt-4o-mini" in judge.detail
    assert student.status == "skip" and "OPENAI_API_KEY" not in os.environ  # the stand-in key is gone


def test_hub_without_a_token_or_with_a_refused_one(servers, monkeypatch):
    import huggingface_hub

    env = {"HF_ENDPOINT": servers.hub.endpoint}
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    check = doctor.check_hub(env, 2.0)
    assert check.status == "missing" and "no token" in check.detail and "hf auth login" in check.fix
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_refusedToken")
    check = doctor.check_hub(env, 2.0)
    assert check.status == "fail" and "HTTP 401" in check.detail and "from the login" in check.detail
    assert "hf_refusedToken" not in repr(check)


def test_exit_code_1_when_a_required_check_fails(monkeypatch, capsys):
    checks = [Check("python", "fail", "3.9.0", "a newer Python", required=True), Check("hub", "fail", "down")]
    monkeypatch.setattr(doctor, "run_checks", lambda args: checks)
    with pytest.raises(SystemExit) as exit_info:
        doctor.cmd_doctor(SimpleNamespace(json=False))
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "fix: a newer Python" in out and "required checks not ok: python" in err and "hub" not in err
