"""Configuration of a dataset build: defaults < preset YAML < command-line flags.

Presets live in ``pipelines/presets/<name>.yaml`` (``smoke``: a few combinations, the default; ``paper``:
the sizes of 2409.19808). A preset holds any field of :class:`DatasetConfig`, with the model settings
under ``teacher:`` and ``judge:``. Environment variables are read only for secrets and locations:
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` (the ``openai`` client's own).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from skillmix.catalog import content_hash
from skillmix.llm import ClientConfig


class ConfigError(ValueError):
    """A bad preset, flag or combination of settings; the message says which."""


@dataclass
class ModelConfig:
    model: str | None = None  # None: the embedded local model
    base_url: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0


@dataclass
class DatasetConfig:
    k: list[int] = field(default_factory=lambda: [3])
    n: int | None = 4  # combinations per k; None = every combination (k=1 only in practice)
    n_per_k: dict[int, int | None] | None = None  # a preset's per-k sizes; N= on the command line wins
    target_accepted: int | None = None  # keep drawing combinations until this many rows are kept per k
    seed: int = 0
    split_seed: int = 0
    catalog: str = "builtin"
    topics: str | None = None
    grader_runs: int = 3
    grader_format: str = "table"
    length_override: bool = True
    name_penalty: bool = True
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig(temperature=0.7, max_tokens=400))
    judge: ModelConfig = field(default_factory=lambda: ModelConfig(temperature=0.0, max_tokens=400))
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 6
    timeout: float = 120.0
    backoff_base: float = 1.0
    max_usd: float | None = None
    prices: str | None = None
    batch_size: int | None = None  # rows per distilabel batch; None: the whole run is one batch (fastest)
    template_dir: str | None = None
    preset: str = "smoke"

    def fingerprint(self) -> str:
        """What makes two runs the same run (the output size settings may grow: they are left out)."""
        data = dataclasses.asdict(self)
        volatile = ("n", "n_per_k", "target_accepted", "max_usd", "concurrency", "requests_per_minute",
                    "tokens_per_minute", "max_retries", "timeout", "backoff_base", "batch_size",
                    "preset")  # fmt: skip
        for name in volatile:
            data.pop(name)
        for role in ("teacher", "judge"):
            data[role].pop("base_url")
        return content_hash(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def client_config(self, concurrency: int | None = None) -> ClientConfig:
        """The LLM client's settings (``concurrency`` overrides the total, e.g. a stage's share)."""
        return ClientConfig(
            concurrency=max(1, concurrency or self.concurrency),
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            max_retries=self.max_retries,
            timeout=self.timeout,
            backoff_base=self.backoff_base,
            max_usd=self.max_usd,
        )

    def count_for(self, k: int) -> int | None:
        if self.n_per_k is not None and k in self.n_per_k:
            return self.n_per_k[k]
        return self.n


def preset_names() -> list[str]:
    folder = resources.files("skillmix_pipelines") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    path = Path(name)
    if not path.suffix:
        if name not in preset_names():
            raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(preset_names())}, or a file)")
        text = (resources.files("skillmix_pipelines") / "presets" / f"{name}.yaml").read_text("utf-8")
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        raise ConfigError(f"preset file {name} not found")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {name}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name}: expected a mapping")
    return data


def build_config(preset: str = "smoke", overrides: dict[str, Any] | None = None) -> DatasetConfig:
    """Defaults, then the preset, then ``overrides`` (flags; ``None`` values are ignored)."""
    data = load_preset(preset)
    merged: dict[str, Any] = {**data, "preset": preset}
    if (overrides or {}).get("n") is not None:
        merged.pop("n_per_k", None)  # N= sets the size of every k
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in ("teacher", "judge"):
            merged[key] = {**(merged.get(key) or {}), **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[key] = value
    return _from_dict(merged)


def _from_dict(data: dict[str, Any]) -> DatasetConfig:
    known = {f.name for f in dataclasses.fields(DatasetConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} in preset or flags")
    defaults = DatasetConfig()
    for role in ("teacher", "judge"):
        model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
        given = data.get(role) or {}
        if set(given) - model_fields:
            raise ConfigError(f"unknown {role} setting {sorted(set(given) - model_fields)[0]!r}")
        data[role] = ModelConfig(**{**dataclasses.asdict(getattr(defaults, role)), **given})
    if data.get("n_per_k") is not None:
        try:
            data["n_per_k"] = {int(k): (None if v is None else int(v)) for k, v in data["n_per_k"].items()}
        except (AttributeError, TypeError, ValueError):
            raise ConfigError("n_per_k must map k to a number of combinations (or null for all)") from None
    if isinstance(data.get("k"), (int, str)):
        data["k"] = parse_k(data["k"])
    config = DatasetConfig(**data)
    validate(config)
    return config


def parse_k(value: int | str) -> list[int]:
    """``3`` or ``"1,2,3"`` -> [1, 2, 3]."""
    try:
        ks = [int(part) for part in str(value).replace(" ", "").split(",") if part]
    except ValueError:
        raise ConfigError(f"K must be an integer or a comma-separated list, got {value!r}") from None
    if not ks:
        raise ConfigError("K is empty")
    return ks


def validate(config: DatasetConfig) -> None:
    for k in config.k:
        if k < 1:
            raise ConfigError(f"K must be >= 1, got {k}")
    if len(set(config.k)) != len(config.k):
        raise ConfigError(f"K lists a value twice: {config.k}")
    if config.n is not None and config.n < 1:
        raise ConfigError(f"N must be >= 1, got {config.n}")
    if config.target_accepted is not None and config.target_accepted < 1:
        raise ConfigError(f"--target-accepted must be >= 1, got {config.target_accepted}")
    if config.grader_runs < 1:
        raise ConfigError("grader_runs must be >= 1")
    if config.grader_format not in ("table", "json"):
        raise ConfigError(f"grader_format must be table or json, got {config.grader_format!r}")
    if config.max_usd is not None and config.max_usd <= 0:
        raise ConfigError(f"--max-usd must be positive, got {config.max_usd}")
    if config.concurrency < 1 or (config.batch_size is not None and config.batch_size < 1):
        raise ConfigError("concurrency and batch_size must be >= 1")


def uses_embedded(config: DatasetConfig) -> bool:
    """No key, no base URL, no model named: the embedded llama.cpp model plays teacher and judge."""
    remote = (
        config.teacher.model
        or config.judge.model
        or os.environ.get("OPENAI_API_KEY")
        or os.environ.get("OPENAI_BASE_URL")
        or config.teacher.base_url
        or config.judge.base_url
    )
    return not remote
