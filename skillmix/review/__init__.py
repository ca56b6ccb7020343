"""skillmix.review: human review of graded rows in Argilla.

The review loop (``skillmix review push`` / ``pull``, :mod:`skillmix.review.cli`): ``sample`` draws the
stratified sample, ``records`` builds the dataset's settings and records, ``push`` sends them, ``pull``
reads the answers, ``decide`` turns them into decisions and agreement figures (``agreement``: kappa and
intervals), ``reviewed`` writes the reviewed folder (laid out as :mod:`skillmix.dataset_folder` says);
``connect`` makes the client. Any Argilla server will do: a local one to run the loop against is
:mod:`skillmix.argilla_local`, which nothing here imports.
"""
