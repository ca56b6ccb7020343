"""The house: one import namespace, every package registered, no import circles, a wheel that imports.

The modules are read with ``ast`` (nothing is imported to build the graph), so a circle hidden in a
function-level import is found too. Imports under ``if TYPE_CHECKING:`` are not run, so they do not count.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def package_dirs() -> dict[str, Path]:
    """Every package of the namespace and its folder: ``skillmix/**`` plus the mapped top-level folders."""
    mapped = {name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()}
    found = {}
    for init in sorted((ROOT / "skillmix").rglob("__init__.py")):
        found[".".join(init.parent.relative_to(ROOT).parts)] = init.parent
    for name, folder in mapped.items():
        for init in sorted(folder.rglob("__init__.py")):
            found[".".join((name, *init.parent.relative_to(folder).parts))] = init.parent
    return found


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the namespace that ``name`` imports (at any depth of its code)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks are never run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 40 and "skillmix.pipelines.dataset" in graph and "skillmix.cards.render" in graph
    assert "skillmix.catalog" in graph["skillmix.cli"]  # the graph sees real imports
    assert "skillmix.pipelines.config" in graph["skillmix.cli"]  # ... function-level ones too
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_cycle_finder_sees_direct_and_indirect_circles():
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_a_function_level_import_back_is_a_circle(tmp_path):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    known = {"a", "b", "c"}
    graph = {m: imports_of(m, tmp_path / f"{m}.py", known) for m in known}
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert find_cycle(graph) == ["a", "b", "a"]


def test_every_package_is_registered_under_one_namespace():
    registered = set(SETUPTOOLS["packages"])
    assert registered == set(package_dirs())
    assert all(name == "skillmix" or name.startswith("skillmix.") for name in registered)
    for name in ("skillmix.pipelines", "skillmix.cards", "skillmix.llm", "skillmix.release"):
        assert name in registered


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing ``start`` imports, at any remove."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def test_the_review_loop_never_imports_the_local_argilla_server():
    """skillmix.review talks to any Argilla through its SDK; running one here is skillmix.argilla_local's."""
    graph = import_graph()
    review = sorted(name for name in graph if in_package(name, "skillmix.review"))
    assert {"skillmix.review", "skillmix.review.push", "skillmix.review.pull"} <= set(review)
    assert "skillmix.argilla_local.sqlsearch" in graph["skillmix.argilla_local.server"]  # the graph sees it
    for name in review:
        local = sorted(m for m in reachable(graph, name) if in_package(m, "skillmix.argilla_local"))
        assert not local, f"{name} imports {', '.join(local)}"


def test_the_pipelines_never_import_the_release():
    """The dataset folder's format belongs with its writer (skillmix.dataset_folder), which the pipelines,
    the release, the review and the training all use: the build does not depend on the release."""
    graph = import_graph()
    pipelines = sorted(name for name in graph if in_package(name, "skillmix.pipelines"))
    assert {"skillmix.pipelines.run", "skillmix.pipelines.driver", "skillmix.pipelines.rows"} <= set(
        pipelines
    )
    assert "skillmix.dataset_folder.schema" in graph["skillmix.pipelines.rows"]  # the graph sees it
    for name in pipelines:
        release = sorted(m for m in graph[name] if in_package(m, "skillmix.release"))
        assert not release, f"{name} imports {', '.join(release)}"


def test_the_evaluation_runs_through_the_one_driver():
    """skillmix dataset and skillmix eval share one run driver and one resolution of the models."""
    graph = import_graph()
    for runner in ("skillmix.pipelines.run", "skillmix.evaluation.run"):
        assert "skillmix.pipelines.driver" in graph[runner], runner
        assert "skillmix.dataset_folder.writer" not in graph[runner], runner  # the claim is the driver's
    own = graph["skillmix.evaluation.run"]  # no cap, no pipeline, no folder of its own
    assert not {"skillmix.pipelines.budget", "skillmix.pipelines.dataset"} & own
    assert "skillmix.llm.roles" in own


BROWSER_DRIVERS = {"playwright", "selenium", "pyppeteer", "websocket", "websockets", "pychrome",
                   "PyChromeDevTools", "cdp", "undetected_chromedriver", "splinter"}  # fmt: skip


def driver_imports(path: Path) -> set[str]:
    """The imports in ``path`` of a browser driver: a driver's package, or any module named ``browser``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
    return {n for n in names if n and (n.split(".")[0] in BROWSER_DRIVERS or "browser" in n.split("."))}


def shipped_python_files() -> list[Path]:
    """Every Python file of the tree outside tests/ (and outside hidden and build folders)."""
    skipped = {"tests", "build", "dist", "out"}
    return sorted(
        path for path in ROOT.rglob("*.py")
        if not (set(path.relative_to(ROOT).parts[:-1]) & skipped)
        and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    )  # fmt: skip


STARTS_SOMETHING = (
    "subprocess",
    "run_cli",
    "run_here",
    "build_dataset",
    "FakeOpenAIServer",
    "FakeHubServer",
    "argilla",
    "from_pretrained",
    "torchrun",
    "sys.executable",
)


def test_make_check_runs_only_modules_that_start_nothing():
    """`make check` (the inner loop) names test modules that start no process or server and load no model."""
    dry = subprocess.run(
        ["make", "-n", "check", "STAMP="], cwd=ROOT, capture_output=True, text=True, check=True
    )
    (line,) = [line for line in dry.stdout.splitlines() if "pytest" in line]
    modules = [ROOT / word for word in line.split() if word.startswith("tests/")]
    assert len(modules) >= 10 and all(m.is_file() for m in modules), line
    for module in modules:
        source = module.read_text()
        found = [word for word in STARTS_SOMETHING if word in source]
        assert not found, f"{module.name} uses {found}: it belongs to make test, not make check"


def test_no_browser_driver_outside_the_tests():
    """The UI tests drive Chromium with Playwright (a dev dependency); nothing that ships does."""
    files = shipped_python_files()
    assert ROOT / "skillmix" / "review" / "push.py" in files and ROOT / "pipelines" / "run.py" in files
    assert not any(path.parent.name == "tests" for path in files)
    found = {str(path.relative_to(ROOT)): sorted(hits) for path in files if (hits := driver_imports(path))}
    assert found == {}
    assert [str(p.relative_to(ROOT)) for p in files if p.stem == "browser"] == []
    hand_written = [str(p.relative_to(ROOT)) for p in files if "remote-debugging" in p.read_text("utf-8")]
    assert hand_written == []  # a DevTools-protocol driver of our own


def test_the_driver_finder_sees_every_form_of_import(tmp_path):
    lines = {
        "import playwright.sync_api": {"playwright.sync_api"},
        "from selenium import webdriver": {"selenium", "selenium.webdriver"},
        "from .browser import Chromium": {"browser", "browser.Chromium"},
        "import websocket": {"websocket"},
        "from skillmix.review import browser": {"skillmix.review.browser"},
        "import webbrowser, json": set(),
        "from pathlib import Path": set(),
    }
    for line, expected in lines.items():
        (tmp_path / "m.py").write_text(f"def f():\n    {line}\n")
        assert driver_imports(tmp_path / "m.py") == expected, line


def run_python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


IMPORT_ALL = """
import importlib, sys
names = sys.argv[1:] if len(sys.argv) > 1 else {names!r}
for name in names:
    module = importlib.import_module(name)
    print(name, module.__file__)
"""


# A module that imports an optional extra at its top, by the distribution it needs: it is imported only where
# that extra is installed (the `inspect` extra's task; every other module imports its extras on use).
NEEDS_EXTRA = {"skillmix.evaluation.inspect_task": "inspect_ai"}


def importable_modules() -> list[str]:
    """Every module but ``__main__`` ones and those whose extra (:data:`NEEDS_EXTRA`) is absent."""
    absent = {name for name, needs in NEEDS_EXTRA.items() if importlib.util.find_spec(needs) is None}
    return sorted(name for name in modules() if not name.endswith("__main__") and name not in absent)


def test_only_the_named_modules_import_inspect_ai_at_their_top():
    """inspect_ai is an extra: the task module imports it at its top (inspect's entry point loads it), every
    other module (the log importer) on use."""
    top = {name for name, path in modules().items()
           if any(isinstance(node, (ast.Import, ast.ImportFrom)) and "inspect_ai" in ast.unparse(node)
                  for node in ast.parse(path.read_text(encoding="utf-8")).body)}  # fmt: skip
    assert top == set(NEEDS_EXTRA)


def test_the_installed_package_imports_every_module(tmp_path):
    out = run_python(IMPORT_ALL.format(names=importable_modules()), cwd=tmp_path)
    files = dict(line.split(" ", 1) for line in out.splitlines())
    assert set(files) == set(importable_modules())
    assert files["skillmix.pipelines.dataset"].startswith(str(ROOT / "pipelines"))
    assert files["skillmix.cards.render"].startswith(str(ROOT / "dataset_cards"))


SKIP_WHEEL = pytest.mark.skipif(os.environ.get("SKILLMIX_SKIP_WHEEL") == "1", reason="SKILLMIX_SKIP_WHEEL=1")


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory) -> tuple[Path, str]:
    """The wheel, built once from a copy of the tree, and everything the build printed (``--verbose``)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"  # built from a copy: setuptools leaves a build/ folder where it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "out"))
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "-w", str(tmp_path / "dist")]
    result = subprocess.run([*wheel_cmd, str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (wheel,) = (tmp_path / "dist").glob("skillmix-*.whl")
    return wheel, result.stdout + result.stderr


@SKIP_WHEEL
def test_a_wheel_installs_one_top_level_name_and_imports_every_module(wheel_build, tmp_path):
    wheel, _ = wheel_build
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"skillmix"}
    for data in ("skillmix/pipelines/presets/smoke.yaml", "skillmix/cards/release.md.jinja2",
                 "skillmix/data/skills.yaml", "skillmix/templates/generation_round1.jinja2"):  # fmt: skip
        assert data in names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = run_python(IMPORT_ALL.format(names=importable_modules()), env=env, cwd=tmp_path)
    files = dict(line.split(" ", 1) for line in out.splitlines())
    assert set(files) == set(importable_modules())
    assert all(path.startswith(str(target)) for path in files.values())


DATA_FILES = {  # the data folders of the tree, by the package they ship in
    "skillmix": ("skillmix", ["data/*.yaml", "templates/*.jinja2"]),
    "skillmix.pipelines": ("pipelines", ["presets/*.yaml"]),
    "skillmix.cards": ("dataset_cards", ["*.jinja2"]),
    "skillmix.training": ("training", ["recipes/**/*.yaml", "accelerate/*.yaml"]),
}
READ_ALL = """
import sys
from importlib import resources
for package, name in (line.split("\\t") for line in sys.stdin.read().splitlines()):
    resource = resources.files(package).joinpath(name)
    print(package, name, len(resource.read_text(encoding="utf-8")), resource, sep="\\t")
"""


@SKIP_WHEEL
def test_the_wheel_builds_without_warnings_and_ships_every_data_file(wheel_build, tmp_path):
    """No "Package would be ignored" from setuptools, and each data file reads through importlib.resources."""
    wheel, output = wheel_build
    assert "Building wheel for skillmix" in output  # the backend's own output is in there
    lines = output.splitlines()
    noisy = [line for line in lines if "BuildBackendWarning" in line or "would be ignored" in line]
    assert noisy == [], "\n".join(noisy[:10])
    found = {(package, pattern): sorted((ROOT / folder).glob(pattern))
             for package, (folder, patterns) in DATA_FILES.items() for pattern in patterns}  # fmt: skip
    assert all(found.values()), [where for where, paths in found.items() if not paths]
    wanted = sorted((package, path.relative_to(ROOT / DATA_FILES[package][0]).as_posix())
                    for (package, _), paths in found.items() for path in paths)  # fmt: skip
    assert ("skillmix.training", "recipes/tiny/smoke.yaml") in wanted
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [(p, n) for p, n in wanted if f"{p.replace('.', '/')}/{n}" not in names] == []
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    listing = "\n".join(f"{package}\t{name}" for package, name in wanted)
    result = subprocess.run(
        [sys.executable, "-c", READ_ALL], input=listing, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    read = [line.split("\t") for line in result.stdout.splitlines()]
    assert sorted((package, name) for package, name, _, _ in read) == wanted
    assert all(int(size) > 0 and where.startswith(str(target)) for _, _, size, where in read)
