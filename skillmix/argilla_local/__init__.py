"""skillmix.argilla_local: an Argilla server on this machine, for review and for the tests.

The review loop (:mod:`skillmix.review`) talks to any Argilla through its SDK and never imports this
package; this one exists so that an Argilla is at hand without Docker or Elasticsearch. ``server`` runs
argilla-server 2.8.0 on loopback (its own virtual environment from ``venv``, SQLite, Redis, and the SQL
search engine of ``sqlsearch`` / ``sqlquery`` in place of Elasticsearch); ``service`` keeps one in the
background for ``make argilla``. The modules that run inside argilla-server's environment
(``argilla_process``, ``sqlsearch``, ``sqlquery``) import ``argilla_server`` only inside functions, so every
module here imports without it.
"""
