"""One tree of errors; each class owns the HTTP status it maps to, here and nowhere else.

    MedfnError (500)
    ├── BadRequest (400)              malformed request, OIP tensor of the wrong shape/datatype
    ├── NotFound (404)                unknown model or version
    │   └── ObjectMissing             an uploaded object (or that version of it) is gone
    ├── PayloadTooLarge (413)         body over the configured limit
    ├── UnsupportedMediaType (415)    content type or DICOM transfer syntax we cannot decode
    ├── UnprocessableInput (422)      the bytes are what they claim but cannot be used
    │   └── SeriesProblem             a DICOM series is not one volume (two orientations, a gap, ...)
    │       └── CorruptInstance       one instance of it cannot be read; carries its index
    ├── ModelNotReady (503)           the model exists but failed to load (reason kept)
    │   └── ArtifactError             an artifact is missing or does not match its sha256
    ├── StorageUnavailable (503)      S3, DynamoDB or the disk did not answer
    └── TransientFailure (503)        raised to an event source so the delivery is retried

The HTTP app answers each with its status and `{"error": message}`; the scan pipeline treats
a 4xx as poison (recorded once, never retried) and a 5xx as transient (medfn.pipeline.failures).
Messages are written by us and go to clients as they are: never put `str(exc)` of a parser
in them, because parsers of medical files may quote patient data back.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "BadRequest",
    "CorruptInstance",
    "MedfnError",
    "ModelNotReady",
    "NotFound",
    "ObjectMissing",
    "PayloadTooLarge",
    "SeriesProblem",
    "StorageUnavailable",
    "TransientFailure",
    "UnprocessableInput",
    "UnsupportedMediaType",
]


class MedfnError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(MedfnError):
    status = 400


class NotFound(MedfnError):
    status = 404


class ObjectMissing(NotFound):
    """Deleted, or overwritten since the event (its ETag no longer matches)."""


class PayloadTooLarge(MedfnError):
    status = 413


class UnsupportedMediaType(MedfnError):
    status = 415


class UnprocessableInput(MedfnError):
    status = 422


class SeriesProblem(UnprocessableInput):
    """The instances of a series do not make one volume; the message names why (medfn.studies)."""


class CorruptInstance(SeriesProblem):
    """One instance cannot be read (not DICOM, truncated, pixels that do not decode, a header value
    that does not parse). `index` is its place in the list given, so the caller can set it aside."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"instance {index} of the series (counting from 0) cannot be used: {reason}")
        self.index = index
        self.reason = reason

    def __reduce__(self) -> tuple[type[CorruptInstance], tuple[int, str]]:  # picklable across processes
        return CorruptInstance, (self.index, self.reason)


class ModelNotReady(MedfnError):
    status = 503


class ArtifactError(ModelNotReady):
    """An artifact is missing or does not match its sha256: the model must not be served."""


class StorageUnavailable(MedfnError):
    status = 503


class TransientFailure(MedfnError):
    """Raised to the event source so the delivery is retried (SQS: a batchItemFailure)."""

    status = 503
