"""The summary's load hint returns the folder's current rows, also after a rebuild into the same folder.

``datasets`` 5.2 caches a local folder's configs (``load_dataset(folder, config)``) by the folder's name, the
config's name and the card's YAML: a rebuild that rewrites a config's Parquet file under the same card gets
the old rows back (the control below shows it). The hint names the Parquet file instead, whose cache key
follows the file's modification time.
"""

from __future__ import annotations

import re

import pytest

from skillmix.dataset_folder.layout import config_path
from skillmix.dataset_folder.schema import write_parquet
from skillmix.pipelines.summary import next_steps

CARD = """---
configs:
- config_name: k3
  data_files:
  - split: train
    path: k3/train-00000-of-00001.parquet
---
"""


def rows(ids: list[str]) -> list[dict]:
    return [{"id": i, "k": 3, "topic": "Sewing"} for i in ids]


def write(folder, ids: list[str]) -> None:
    import pyarrow as pa

    schema = pa.schema([("id", pa.string()), ("k", pa.int64()), ("topic", pa.string())])
    write_parquet(rows(ids), folder / config_path("k3"), schema)


def hint_call(out: str) -> str:
    line = next(line for line in next_steps({"configs": ["k3", "rejected"]}, out) if "load:" in line)
    return re.search(r"(datasets\.load_dataset\(.*?\))", line).group(1)


def test_the_load_hint_sees_a_rebuild_where_the_folder_form_is_stale(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder, cache = tmp_path / "out", str(tmp_path / "cache")
    (folder / "k3").mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    call = hint_call(str(folder)).replace('split="train")', f'split="train", cache_dir={cache!r})')

    def by_hint() -> list[str]:
        return eval(call, {"datasets": datasets})["id"]  # the hint exactly as printed, with a private cache

    def by_folder() -> list[str]:
        return datasets.load_dataset(str(folder), "k3", split="train", cache_dir=cache)["id"]

    write(folder, ["a", "b"])
    assert list(by_hint()) == ["a", "b"] and list(by_folder()) == ["a", "b"]
    write(folder, ["c", "d"])  # the rebuild: same card, same sizes, new rows
    assert list(by_hint()) == ["c", "d"]
    assert list(by_folder()) == ["a", "b"]  # the control: datasets' folder cache is stale (why the hint)
