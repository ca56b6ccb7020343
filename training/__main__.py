"""``python -m skillmix.training --config RECIPE ...``: the ``skillmix train`` command
(:mod:`skillmix.training.cli`), for launchers that take a module (``accelerate launch -m skillmix.training``,
``torchrun -m skillmix.training``)."""

import sys

from skillmix.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
