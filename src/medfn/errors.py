"""One tree of errors; each class owns the HTTP status it maps to.

    MedfnError (500)
    ├── BadRequest (400)              malformed request, OIP tensor of the wrong shape/datatype
    │   └── Forbidden / QuotaExceeded live in metering, beside API keys
    ├── NotFound (404)                unknown model or version
    ├── PayloadTooLarge (413)         body over the configured limit
    ├── UnsupportedMediaType (415)    content type or DICOM transfer syntax we cannot decode
    ├── UnprocessableInput (422)      the bytes are what they claim but cannot be used
    └── ModelNotReady (503)           the model exists but failed to load (reason kept)

Messages are written by us and go to clients as they are: never put `str(exc)` of a parser
in them, because parsers of medical files may quote patient data back.
"""

from __future__ import annotations


class MedfnError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(MedfnError):
    status = 400


class NotFound(MedfnError):
    status = 404


class PayloadTooLarge(MedfnError):
    status = 413


class UnsupportedMediaType(MedfnError):
    status = 415


class UnprocessableInput(MedfnError):
    status = 422


class ModelNotReady(MedfnError):
    status = 503
