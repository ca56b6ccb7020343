"""skillmix: build, publish, review, train on and evaluate Skill-Mix datasets.

Submodules are imported lazily by their users; importing the package does no work.
"""

__version__ = "0.1.0"
