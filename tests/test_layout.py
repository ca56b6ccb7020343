"""The house: one import namespace, every package registered, no import circles, a wheel that imports.

The modules are read with ``ast`` (nothing is imported to build the graph), so a circle hidden in a
function-level import is found too. Imports under ``if TYPE_CHECKING:`` are not run, so they do not count.
"""

from __future__ import annotations

import ast
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


def importable_modules() -> list[str]:
    return sorted(name for name in modules() if not name.endswith("__main__"))


def test_the_installed_package_imports_every_module(tmp_path):
    out = run_python(IMPORT_ALL.format(names=importable_modules()), cwd=tmp_path)
    files = dict(line.split(" ", 1) for line in out.splitlines())
    assert set(files) == set(importable_modules())
    assert files["skillmix.pipelines.dataset"].startswith(str(ROOT / "pipelines"))
    assert files["skillmix.cards.render"].startswith(str(ROOT / "dataset_cards"))


@pytest.mark.skipif(os.environ.get("SKILLMIX_SKIP_WHEEL") == "1", reason="SKILLMIX_SKIP_WHEEL=1")
def test_a_wheel_installs_one_top_level_name_and_imports_every_module(tmp_path):
    source = tmp_path / "src"  # built from a copy: setuptools leaves a build/ folder where it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "out"))
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist")]
    subprocess.run([*wheel_cmd, str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("skillmix-*.whl")
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
