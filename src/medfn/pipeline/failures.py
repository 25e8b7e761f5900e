"""How the pipeline sorts failures: poison (record and quarantine once) or transient (retry).

    a MedfnError of 4xx (UnprocessableInput, ObjectMissing, ...)       poison: never retried
    a MedfnError of 5xx (ModelNotReady, StorageUnavailable, ...)      transient: retried

Anything else raised while processing is a bug, treated as transient so that the message is
retried and, if it keeps failing, ends in the dead-letter queue with an error record.
"""

from __future__ import annotations

import traceback

from medfn.errors import MedfnError


def is_poison(exc: BaseException) -> bool:
    return isinstance(exc, MedfnError) and exc.status < 500


def error_code(exc: BaseException) -> str:
    """A stable, PHI-free code: the error class in kebab case ("unprocessable-input")."""
    name = type(exc).__name__ if isinstance(exc, MedfnError) else "InternalError"
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def safe_reason(exc: BaseException) -> str:
    """Our own message for our errors; for anything else only where it was raised.

    A foreign exception's text may quote the file it choked on (a DICOM header holds the
    patient's name), so it never reaches a log line or a record.
    """
    if isinstance(exc, MedfnError):
        return exc.message
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"internal error {type(exc).__name__}{where}"
