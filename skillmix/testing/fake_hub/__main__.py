"""``python -m skillmix.testing.fake_hub``: runs :func:`skillmix.testing.fake_hub.cli.main`."""

from __future__ import annotations

import sys

from skillmix.testing.fake_hub.cli import main

if __name__ == "__main__":
    sys.exit(main())
