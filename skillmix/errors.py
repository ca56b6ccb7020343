"""Which exceptions the entry points (``skillmix``, ``python -m skillmix.training``) turn into one line.

The project raises its own types for what a user can fix, each with a message written for the user: those
end a command with one ``skillmix: error: ...`` line, exit code 2 (:data:`BAD_INPUT`), or, for a run that
started and could not finish (a server that died, a folder that could not be completed), exit code 1
(:data:`FAILED_RUN`). Anything else (a plain ``ValueError`` or ``RuntimeError`` from a library, CUDA out
of memory, an NCCL error, a bug) is not the user's input: its traceback is what explains it, exit code 1.

The types are named by where they are defined rather than imported, so that classifying an error imports
nothing (the training and review modules need their extras); an error that was raised was imported.
``tests/test_cli_errors.py`` checks that every name is a class of the right kind.
"""

from __future__ import annotations

BAD_INPUT: frozenset[str] = frozenset(
    {
        "skillmix.config.ConfigError",  # settings, flags, files and folders given to a command
        "skillmix.skills.CatalogError",  # a skills or topics file (skillmix.catalog re-exports it)
        "skillmix.sampling.SamplingError",  # more combinations asked for than a setting has
        "skillmix.release.publish.PublishError",  # a release that cannot be made from the folder given
        "skillmix.release.versions.VersionError",  # a version that is not semantic versioning
        "skillmix.review.connect.ReviewError",  # a review that cannot be pushed or pulled
        "skillmix.training.leakage.LeakageError",  # training rows that reveal an evaluation set
        "skillmix.training.masking.MaskError",  # a chat template whose answers cannot be masked
    }
)
FAILED_RUN: frozenset[str] = frozenset(
    {
        "skillmix.pipelines.output.RunFailed",  # the output folder could not be completed
        "skillmix.llm.local.StudentServerError",  # the local student's server died or did not answer
        "skillmix.llm.embedded.EmbeddedServerError",  # the embedded llama.cpp server, likewise
        "skillmix.llm.batch.BatchRefused",  # a provider refused a batch for the account (a quota, a limit)
        "skillmix.argilla_local.server.ArgillaServerError",  # the local Argilla server, likewise
        "skillmix.argilla_local.service.ServiceError",
        "skillmix.argilla_local.venv.VenvError",
    }
)

# A run that stopped for work done outside it (the batch files it wrote, to be run by any engine): not a
# failure, not bad input; exit code 75, sysexits.h's EX_TEMPFAIL ("the user is invited to retry").
OUTSIDE_WORK: frozenset[str] = frozenset({"skillmix.pipelines.batch_files.OutsideWork"})
EXIT_OUTSIDE_WORK = 75


def _is(exc: BaseException, names: frozenset[str]) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in names for cls in type(exc).__mro__)


def is_bad_input(exc: BaseException) -> bool:
    """``exc`` is (a subclass of) one of the project's bad-input errors: one line, exit code 2."""
    return _is(exc, BAD_INPUT)


def is_failed_run(exc: BaseException) -> bool:
    """``exc`` is (a subclass of) one of the project's failed-run errors: one line, exit code 1."""
    return _is(exc, FAILED_RUN)


def is_outside_work(exc: BaseException) -> bool:
    """``exc`` stops a run for work outside it (:data:`OUTSIDE_WORK`): its message, exit code 75."""
    return _is(exc, OUTSIDE_WORK)
