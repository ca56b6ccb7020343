"""skillmix.review: human review of graded rows in Argilla, and a local Argilla server to do it with.

``server`` runs argilla-server 2.8.0 on loopback (its own virtual environment from ``venv``, SQLite, Redis,
and the SQL search engine of ``sqlsearch`` / ``sqlquery`` in place of Elasticsearch); ``service`` keeps one in
the background for ``make argilla``; ``browser`` drives headless Chromium to check the review UI. The modules
that run inside argilla-server's environment (``argilla_process``, ``sqlsearch``, ``sqlquery``) import
``argilla_server`` only inside functions, so every module here imports without it.

The review loop (``skillmix review push`` / ``pull``, :mod:`skillmix.review.cli`): ``sample`` draws the
stratified sample, ``records`` builds the dataset's settings and records, ``push`` sends them, ``pull``
reads the answers, ``decide`` turns them into decisions and agreement figures (``agreement``: kappa and
intervals), ``reviewed`` writes the reviewed folder; ``data`` reads a dataset folder, ``connect`` the client.
"""
