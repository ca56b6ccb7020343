"""The release of a dataset: versioned Hub releases, their cards, the leakage audit, statistics, figures
and the evaluation prompt sets (the folder it reads and the schema it writes: :mod:`skillmix.dataset_folder`).

* :mod:`skillmix.release.publish`: ``publish`` (one commit, then the tag) and ``download``;
* :mod:`skillmix.release.card`: the release card and the changelog against the previous release;
* :mod:`skillmix.release.versions`: semantic versions of releases;
* :mod:`skillmix.release.audit`: the leakage checks run before a release;
* :mod:`skillmix.release.stats`, :mod:`skillmix.release.figures`: the card's statistics and figures;
* :mod:`skillmix.release.evalsets`: the Skill-Mix(k) evaluation prompt sets (train / held-out / all).
"""
