"""Shared fixtures: the built-in catalog and a small hand-made catalog."""

from __future__ import annotations

import pytest

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
