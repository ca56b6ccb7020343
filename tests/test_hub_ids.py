"""The one ``repo@revision`` parser (:func:`skillmix.hub_ids.split_revision`) shared by ``eval --eval-set``,
``eval --student-model`` and ``train --data``: Hub ids with and without a revision, an empty revision, and
local paths, with '@' in their own names or not, which are never cut where they exist."""

from __future__ import annotations

import pytest

from skillmix.hub_ids import is_hub_id, split_revision


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("org/name@v1.0.0", ("org/name", "v1.0.0")),  # clean
        ("org/name@0123abc", ("org/name", "0123abc")),  # a commit
        ("name@main", ("name", "main")),  # a repo without an owner
        ("org/name", ("org/name", None)),  # no revision
        ("org/name@", ("org/name", None)),  # an empty revision is none
        ("org/name@refs/pr/1", ("org/name", "refs/pr/1")),  # a revision with slashes
        ("org/name@a@b", ("org/name", "a@b")),  # a Hub id has no '@': the revision is the rest
        ("./missing@v1", ("./missing", "v1")),  # a path that does not exist is read like a Hub id
        ("", ("", None)),
    ],
)
def test_a_reference_naming_nothing_here_is_split_at_its_first_at(reference, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of these names exists here
    assert split_revision(reference) == expected


def test_an_existing_path_with_an_at_is_whole(tmp_path, monkeypatch):
    folder = tmp_path / "run@2"
    folder.mkdir()
    assert split_revision(str(folder)) == (str(folder), None)
    monkeypatch.chdir(tmp_path)
    assert split_revision("run@2") == ("run@2", None)  # relative to the working directory
    (tmp_path / "data@v1.parquet").write_text("")
    assert split_revision("data@v1.parquet") == ("data@v1.parquet", None)  # a file too


def test_an_existing_path_pinned_at_a_revision_is_cut_after_the_path(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "run@2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert split_revision("out@v1") == ("out", "v1")  # the caller decides: a folder has no revision
    assert split_revision("run@2@v1") == ("run@2", "v1")  # the '@' of its own name is kept
    assert split_revision("run@2@") == ("run@2", None)
    assert split_revision(f"{tmp_path}/run@2@a@b") == (f"{tmp_path}/run@2", "a@b")


def test_a_home_path_is_expanded_to_find_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models@old").mkdir()
    assert split_revision("~/models@old") == ("~/models@old", None)  # returned as given
    assert split_revision("~/models@old@v2") == ("~/models@old", "v2")


def test_names_no_path_can_have_are_read_as_hub_ids():
    assert split_revision("org/na\0me@v1") == ("org/na\0me", "v1")  # never a traceback from the file system
    assert split_revision("x" * 5000 + "@v1") == ("x" * 5000, "v1")


@pytest.mark.parametrize(
    ("text", "valid"),
    [("org/name", True), ("name", True), ("Org-1/my_model.v2", True), ("org/name/extra", False),
     ("not a model id", False), ("org/", False), ("-org/name", False), ("", False), ("org/na@me", False)],
)  # fmt: skip
def test_is_hub_id(text, valid):
    assert is_hub_id(text) is valid
