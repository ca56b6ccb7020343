"""Typed configuration: pydantic models, YAML files, and command-line flags generated from the models.

Every configuration of the toolkit (the dataset build today; the evaluation and training next) is one
pydantic model with its types, defaults, bounds and help text declared once. Values come in three layers,
each overriding the one before: the model's defaults < a YAML file (a preset or a recipe) < flags. The
flags are generated from the model (:func:`add_flags`), as TRL's ``TrlParser`` does from dataclasses, so a
new setting is one field, not a field plus a flag plus a mapping.

Models are strict (``"8"`` is not an integer) and forbid unknown keys. Every error becomes one
:class:`ConfigError` line that names where the value came from (the file, or the flag) and the key::

    preset bad.yaml: client.concurrency: must be >= 1, got 0
    --teacher-max-tokens (teacher.max_tokens): must be >= 1, got 0
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Flags = dict[str, tuple[str, ...]]  # argparse dest -> the field's path in the model


class ConfigError(ValueError):
    """A bad configuration file, key, value or flag; the message names the source and the key."""


def read_yaml(path: str | Path, what: str = "file") -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file, bad YAML or a non-mapping is a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc})") from None
    return parse_yaml(text, f"{what} {path}")


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied key by key, nested mappings merged; ``None`` overrides nothing."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(model: type[M], data: Mapping[str, Any], source: str, flags: Flags | None = None) -> M:
    """Validate ``data`` into ``model``; errors name ``source`` and the key (or the flag that set it)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(describe(exc, source, flags)) from None


def describe(exc: ValidationError, source: str, flags: Flags | None = None) -> str:
    """The first error of ``exc`` as one line: ``source: key: problem``."""
    error = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in error["loc"])
    by_path = {path: dest for dest, path in (flags or {}).items()}
    flag = by_path.get(tuple(str(part) for part in error["loc"]))
    where = f"--{flag.replace('_', '-')} ({key})" if flag else f"{source}: {key}" if key else source
    return f"{where}: {_problem(error)}"


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _problem(error: Mapping[str, Any]) -> str:
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {next(iter(ctx.values()))}, got {given!r}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {given!r}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {type(given).__name__} {given!r}"


def add_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    flatten: Iterable[str] = (),
    skip: Iterable[str] = (),
    _path: tuple[str, ...] = (),
    _name: tuple[str, ...] = (),
) -> Flags:
    """Add one flag per field of ``model``: nested models as ``--<field>-<subfield>``, or without the
    prefix for the fields named in ``flatten``; mappings and the fields in ``skip`` get no flag. Every flag
    defaults to ``None``, meaning "not given". Returns the flags' destinations with their paths in the
    model, for :func:`overrides` and for error messages that name the flag.
    """
    flags: Flags = {}
    for field_name, field in model.model_fields.items():
        path = (*_path, field_name)
        name = _name if field_name in flatten else (*_name, field_name)
        kind = _unwrap(field.annotation)
        if field_name in skip or typing.get_origin(kind) in (dict, Mapping):
            continue
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            flags.update(add_flags(parser, kind, flatten, skip, path, name))
            continue
        dest = "_".join(name)
        help_text = field.description or field_name.replace("_", " ")
        options: dict[str, Any] = {"dest": dest, "default": None, "help": help_text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            options["choices"] = typing.get_args(kind)
        else:
            options["type"] = kind if kind in (int, float) else str
        parser.add_argument(f"--{dest.replace('_', '-')}", **options)
        flags[dest] = path
    return flags


def overrides(args: argparse.Namespace, flags: Flags) -> dict[str, Any]:
    """The flags that were given, as a nested mapping to :func:`merge` over the YAML's."""
    out: dict[str, Any] = {}
    for dest, path in flags.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _unwrap(annotation: Any) -> Any:
    """``int | None`` -> ``int``; ``list[int]`` stays (a flag takes it as a string)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation
