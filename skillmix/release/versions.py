"""Semantic versions of releases: parsing, ordering, and the release a new version follows."""

from __future__ import annotations

import re
from collections.abc import Iterable

SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")


class VersionError(ValueError):
    """A release version that is not semantic versioning (``v1.0.0``, ``v1.0.0-rc.1``)."""


def parse_version(version: str) -> tuple[int, int, int, str]:
    """``v1.2.3-rc.1`` -> ``(1, 2, 3, "rc.1")``, ordered so that a release sorts after its pre-releases."""
    match = SEMVER.match(version)
    if not match:
        raise VersionError(f"version {version!r} is not semantic versioning like v1.0.0 (or v1.0.0-rc.1)")
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre or "~"  # "~" sorts a release after its pre-releases


def previous_release(tags: Iterable[str], version: str) -> str | None:
    """The highest released version below ``version`` among the repo's semver tags."""
    key = parse_version(version)
    older = []
    for tag in tags:
        try:
            parsed = parse_version(tag)
        except VersionError:
            continue
        if parsed < key:
            older.append((parsed, tag))
    return max(older)[1] if older else None
