"""A griffe extension of ours: the API pages see the packages that setuptools maps from top-level folders.

``pyproject.toml`` maps four folders into the one namespace (``[tool.setuptools.package-dir]``:
``skillmix.pipelines`` <- ``pipelines/``, ``skillmix.training`` <- ``training/``, ``skillmix.evaluation`` <-
``evaluation/``, ``skillmix.cards`` <- ``dataset_cards/``). griffe, mkdocstrings' loader, finds a package by
walking its folder on disk, so it sees ``skillmix/`` and nothing of the four (``KeyError: 'pipelines'``, or
"could not be found" in mkdocs). Once it has loaded the package ``skillmix``, this extension reads the same
table from ``pyproject.toml`` (next to the loaded ``skillmix/`` folder) and visits each mapped folder as the
subpackage it is, with griffe's public ``visit`` and the loader's own settings, so that aliases across the
namespace resolve as for any other module. Nothing is imported and no folder moves.

It also turns the reStructuredText the docstrings are written in into the Markdown mkdocstrings renders
(``:func:`name``` and the other roles become ``name`` in code; a paragraph ending in ``::`` before its
indented example ends in ``:``), and shows a pydantic field declared ``Field(default, description="...")``
as its default with its description as its docstring, so that a configuration model's page lists its keys
with their defaults and what they mean.

Configured in ``mkdocs.yml`` (``plugins: mkdocstrings: handlers: python: options: extensions``).
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import Any

import griffe

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

PACKAGE = "skillmix"
BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const|ref):`(~?)([^`]+)`")


def package_dirs(root: Path) -> dict[str, Path]:
    """The remapped packages of ``root/pyproject.toml`` by dotted name, each with its folder (none when
    ``skillmix`` is an installed wheel: there the four packages are folders of ``skillmix/`` already)."""
    if not (root / "pyproject.toml").is_file():
        return {}
    with (root / "pyproject.toml").open("rb") as handle:
        table = tomllib.load(handle)["tool"]["setuptools"].get("package-dir", {})
    return {name: root / folder for name, folder in table.items() if name.startswith(f"{PACKAGE}.")}


def markdown(text: str) -> str:
    """reST roles -> code spans; a trailing ``::`` (a literal block follows) -> ``:``; a simple table
    (``====  ====`` borders) -> the same text in a code block, as it reads in the source."""
    text = ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    text = re.sub(r"(?<=\S)::$", ":", text, flags=re.MULTILINE)
    return simple_tables(text)


def simple_tables(text: str) -> str:
    """Fence each reST simple table: from its first border to the border that ends it (one followed by
    a blank line or the end of the docstring; the first border never ends a table)."""
    lines, out, start = text.split("\n"), [], None
    for index, line in enumerate(lines):
        border = BORDER.match(line) is not None
        if border and start is None:
            start = index
            out.append("```text")
        out.append(line)
        last = index + 1 == len(lines) or not lines[index + 1].strip()
        if border and start is not None and index > start and last:
            start = None
            out.append("```")
    return "\n".join(out)


class RemappedPackages(griffe.Extension):
    """Visit the folders that ``[tool.setuptools.package-dir]`` maps under ``skillmix``."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE or pkg.filepath is None or isinstance(pkg.filepath, list):
            return
        root = Path(pkg.filepath).parent.parent  # skillmix/__init__.py -> the repository
        for name, folder in sorted(package_dirs(root).items(), key=lambda item: item[0].count(".")):
            parent_path, _, short = name.rpartition(".")
            parent = pkg if parent_path == PACKAGE else pkg.get_member(parent_path.split(".", 1)[1])
            if short not in parent.members:
                self.visit_package(short, folder, parent, loader)
        self.normalize(pkg, loader)

    def visit_package(
        self, name: str, folder: Path, parent: griffe.Module, loader: griffe.GriffeLoader
    ) -> None:
        module = self.visit_file(name, folder / "__init__.py", parent, loader)
        for path in sorted(folder.iterdir()):
            if path.suffix == ".py" and path.stem != "__init__":
                self.visit_file(path.stem, path, module, loader)
            elif path.is_dir() and (path / "__init__.py").is_file():
                self.visit_package(path.name, path, module, loader)
        loader.expand_exports(module)
        loader.expand_wildcards(module, external=False)

    def visit_file(
        self, name: str, path: Path, parent: griffe.Module, loader: griffe.GriffeLoader
    ) -> griffe.Module:
        code = path.read_text(encoding="utf-8-sig")
        loader.lines_collection[path] = code.splitlines(keepends=False)
        module = griffe.visit(
            name,
            filepath=path,
            code=code,
            extensions=loader.extensions,
            parent=parent,
            docstring_parser=loader.docstring_parser,
            docstring_options=loader.docstring_options,
            lines_collection=loader.lines_collection,
            modules_collection=loader.modules_collection,
        )
        parent.set_member(name, module)
        return module

    def normalize(self, obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
        elif obj.is_attribute and (field := pydantic_field(obj)) is not None:
            default, description = field
            obj.value = default
            if description:
                parser, options = loader.docstring_parser, loader.docstring_options
                text = html.escape(description, quote=False)  # "<model>" is text, not a tag
                obj.docstring = griffe.Docstring(text, parent=obj, parser=parser, parser_options=options)
        for member in obj.members.values():
            if not member.is_alias:
                self.normalize(member, loader)


def pydantic_field(attribute: griffe.Object) -> tuple[str | None, str | None] | None:
    """``(default, description)`` of an attribute declared ``x: T = Field(...)``; None for any other.

    The default is the source of the field's default (``None`` when the field is required), or of what its
    ``default_factory`` makes (``TrainingConfig()``, the body of a ``lambda``).
    """
    value = getattr(attribute, "value", None)
    if not (isinstance(value, griffe.ExprCall) and str(value.function) == "Field"):
        return None
    keywords = {a.name: str(a.value) for a in value.arguments if isinstance(a, griffe.ExprKeyword)}
    positional = [str(a) for a in value.arguments if not isinstance(a, griffe.ExprKeyword)]
    default = positional[0] if positional else keywords.get("default")
    if default == "...":
        default = None
    if default is None and (factory := keywords.get("default_factory")):
        default = factory.split(":", 1)[1].strip() if factory.startswith("lambda") else f"{factory}()"
    return default, literal_text(keywords.get("description"))


def literal_text(source: str | None) -> str | None:
    try:
        text = ast.literal_eval(source) if source else None
    except (ValueError, SyntaxError):
        return None
    return text if isinstance(text, str) else None
