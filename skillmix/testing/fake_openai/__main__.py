"""``python -m skillmix.testing.fake_openai``: runs :func:`skillmix.testing.fake_openai.cli.main`.

:func:`main` lives in :mod:`~skillmix.testing.fake_openai.cli`, not here, so that the package can re-export it
without importing this module: ``python -m`` runs this file as ``__main__``, and an import of it as
``skillmix.testing.fake_openai.__main__`` would run it a second time.
"""

from __future__ import annotations

import sys

from skillmix.testing.fake_openai.cli import main

if __name__ == "__main__":
    sys.exit(main())
