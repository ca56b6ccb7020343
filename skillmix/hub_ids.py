"""How a command line names a Hugging Face Hub repository, ``org/name`` or ``org/name@revision``, when it
could name a local folder instead.

Three options take such a reference: ``skillmix eval --eval-set`` (a release), ``skillmix eval
--student-model`` (a checkpoint) and ``skillmix train --data`` (a dataset). They share this one parser of the
``@revision`` suffix, so that a reference means the same thing to each of them. It sits at the top of the
package, beside the protocol, and imports nothing but :mod:`pathlib` and :mod:`re`: the evaluation sets
(:mod:`skillmix.evaluation.sets`), the local model server (:mod:`skillmix.llm.local`) and the training
configuration (:mod:`skillmix.training.config`) import it without an import circle and without loading
pydantic, ``datasets`` or the Hub client.

A reference is read as a local path first, then as a Hub id (relative paths are relative to the working
directory, ``~`` is expanded):

* a path that exists is whole, '@' and all, without a revision (``out/run@2`` is the folder of that name);
* else, when the part before one of its '@' exists, that path is pinned at the revision after it (the
  last such '@'; a command may refuse it: a folder has no revision);
* else it is a Hub id, which never contains '@': the revision is everything after the first '@'.

An empty revision (``org/name@``) is no revision. Whether the rest is a valid Hub id is the caller's
question (:func:`is_hub_id` is the strict form, ``org/name`` or ``name``).
"""

from __future__ import annotations

import re
from pathlib import Path

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def split_revision(reference: str) -> tuple[str, str | None]:
    """``org/name@v1.0.0`` -> ``("org/name", "v1.0.0")``; an existing path has no revision (module docs)."""
    if _exists(reference):
        return reference, None
    cuts = [index for index, char in enumerate(reference) if char == "@"]
    for cut in reversed(cuts[1:]):  # an existing path with '@' in its own name, pinned at a revision
        if _exists(reference[:cut]):
            return reference[:cut], reference[cut + 1 :] or None
    base, _, revision = reference.partition("@")
    return base, revision or None


def is_hub_id(text: str) -> bool:
    """``org/name`` or ``name``: letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit."""
    return _HUB_ID.fullmatch(text) is not None


def _exists(text: str) -> bool:
    try:
        return bool(text) and Path(text).expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # a name too long, no home directory, a NUL byte
        return False
