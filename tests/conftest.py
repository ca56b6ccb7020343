"""Shared fixtures: the built-in catalog and a small hand-made catalog, the loopback Hub, and datasets built
once per session by `skillmix dataset` against the fake teacher and judge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runs import HUB_TOKEN, dataset_cmd, run_here

from skillmix.catalog import Catalog, Skill, load_catalog


@pytest.fixture(scope="session")
def builtin():
    return load_catalog("builtin")


@pytest.fixture
def tiny() -> Catalog:
    """Six skills (3 training, 3 held-out) and four topics."""
    rows = [
        ("metaphor", "literary"),
        ("red herring", "rhetorical"),
        ("aphorism", "literary"),
        ("modus ponens", "logical"),
        ("spatial reasoning", "logical"),
        ("self serving bias", "reasoning"),
    ]
    skills = tuple(Skill(n, c, f"definition of {n}", f"example of {n}") for n, c in rows)
    return Catalog(skills=skills, topics=("Sewing", "Dueling", "Knots", "Beekeeping"), source="tiny")


@pytest.fixture
def one_torch_thread():
    """Tiny models train as fast on one thread, and two threads spin when other work shares the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def hub(tmp_path):
    """A loopback Hub in the test's folder whose write token is ``cli_runs.HUB_TOKEN``. Point a subprocess
    at it with ``cli_runs.hub_env(hub, home)``, this process with ``hub.configure_clients(monkeypatch,
    home)``."""
    from skillmix.testing.fake_hub import FakeHubServer

    with FakeHubServer(token=HUB_TOKEN, storage=tmp_path / "hub") as server:
        yield server


DatasetBuilder = Callable[..., Path]


@pytest.fixture(scope="session")
def build_dataset(tmp_path_factory) -> DatasetBuilder:
    """``build_dataset(k="2,3", n=6, seed=3, accept_rate=0.5, *flags)``: the folder `skillmix dataset --k K
    --n N *flags` writes against a fake teacher and judge (``SkillMixResponder(seed, accept_rate)``), built
    in this process once per session for each set of arguments. Read it, never change it: a test that
    changes a dataset copies it first (``shutil.copytree``)."""
    from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

    built: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("datasets")

    def build(k: str, n: int, seed: int, accept_rate: float, *flags: str) -> Path:
        key = (k, n, seed, accept_rate, flags)
        if key not in built:
            out = root / f"d{len(built)}"
            with FakeOpenAIServer(responder=SkillMixResponder(seed=seed, accept_rate=accept_rate)) as server:
                result = run_here(dataset_cmd(server, out, "--k", k, "--n", str(n), *flags))
            assert result.returncode == 0, result.stderr[-3000:]
            built[key] = out
        return built[key]

    return build
