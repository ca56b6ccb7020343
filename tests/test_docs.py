"""The documentation site: ``mkdocs build --strict`` passes on ``docs/`` and ``mkdocs.yml`` as they are, the
API pages render the packages that ``pyproject.toml`` maps from top-level folders (``pipelines/``,
``training/``, ``evaluation/``: griffe sees them through ``docs/griffe_remapped.py``), and a copy of the site
with a page missing, a broken anchor or a page left out of the nav fails, with a warning naming it.

Every build runs in this process (``mkdocs.commands.build``), on a copy in a temporary folder. The broken
copies leave out the API blocks (``::: module``) and the mkdocstrings plugin, so that each of them takes a
fraction of a second; the API pages themselves are built once, by the first test.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

ROOT = Path(__file__).resolve().parents[1]


class Warnings(logging.Handler):
    """Every warning mkdocs and its plugins log during a build."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def copy_site(target: Path, api: bool = True) -> Path:
    """``docs/`` and ``mkdocs.yml`` under ``target``; without ``api``, no API blocks and no mkdocstrings."""
    shutil.copytree(ROOT / "docs", target / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    config = target / "mkdocs.yml"
    shutil.copy(ROOT / "mkdocs.yml", config)
    if not api:
        for page in (target / "docs" / "api").glob("*.md"):
            page.write_text(re.sub(r"^::: .*\n(?:[ \t]+.*\n)*", "", page.read_text(), flags=re.MULTILINE))
        data = yaml.safe_load(config.read_text())
        data["plugins"] = [p for p in data["plugins"] if not (isinstance(p, dict) and "mkdocstrings" in p)]
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def build_site(config_file: Path) -> list[str]:
    """Build strictly; the warnings logged. Raises ``Abort`` when there were any."""
    handler, logger = Warnings(), logging.getLogger("mkdocs")
    logger.addHandler(handler)
    try:
        build(load_config(str(config_file), strict=True))
    except Abort as error:
        raise Abort(f"{error}: " + " | ".join(handler.messages)) from error
    finally:
        logger.removeHandler(handler)
    return handler.messages


def test_the_site_builds_strictly_with_the_api_of_the_remapped_packages(tmp_path):
    config = copy_site(tmp_path)
    assert build_site(config) == []
    site = tmp_path / "site"
    runs = (site / "api" / "runs" / "index.html").read_text(encoding="utf-8")
    for name in (
        "skillmix.pipelines.driver",  # pipelines/
        "skillmix.pipelines.driver.Driver",
        "skillmix.pipelines.driver.claim",
        "skillmix.training.config.TrainConfig",  # training/
        "skillmix.training.config.TrainingConfig.max_steps",  # a field, with its default and description
        "skillmix.evaluation.score",  # evaluation/
        "skillmix.evaluation.score.score_samples",
        "skillmix.dataset_folder.layout.read_dataset_folder",
    ):
        assert f'id="{name}"' in runs, name
    assert "tokens per sample (or per packed row)" in runs  # the field's description is its docstring
    protocol = (site / "api" / "protocol" / "index.html").read_text(encoding="utf-8")
    for name in ("skillmix.metrics.aggregate", "skillmix.sampling.sample_combinations", "skillmix.catalog"):
        assert f'id="{name}"' in protocol, name
    assert ":func:" not in protocol and ":class:" not in runs  # reST roles read as Markdown
    testing = (site / "api" / "testing" / "index.html").read_text(encoding="utf-8")
    assert 'id="skillmix.testing.fake_openai.FakeOpenAIServer"' in testing
    assert 'id="skillmix.testing.fake_hub.FakeHubServer"' in testing


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(entries) -> list[str]:
        found = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found += pages(value) if isinstance(value, list) else [value]
        return found

    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(pages(nav)) == on_disk


@pytest.fixture
def light_site(tmp_path) -> Path:
    """A copy without the API blocks, which builds strictly as it is."""
    config = copy_site(tmp_path, api=False)
    assert build_site(config) == []
    shutil.rmtree(tmp_path / "site")
    return config


def test_a_page_the_nav_names_but_is_missing_fails_the_build(light_site):
    (light_site.parent / "docs" / "batch.md").unlink()
    with pytest.raises(Abort, match=r"'batch\.md' is included in the 'nav' configuration.*not found"):
        build_site(light_site)


def test_a_broken_anchor_fails_the_build(light_site):
    page = light_site.parent / "docs" / "evaluation.md"
    page.write_text(page.read_text().replace("reliability.md#whose-failure-is-it", "reliability.md#whose"))
    with pytest.raises(Abort, match=r"'evaluation\.md'.*does not contain an anchor '#whose'"):
        build_site(light_site)


def test_a_page_left_out_of_the_nav_fails_the_build(light_site):
    (light_site.parent / "docs" / "notes.md").write_text("# Notes\n")
    with pytest.raises(Abort, match=r"not included in the \"nav\" configuration:\s+- notes\.md"):
        build_site(light_site)
