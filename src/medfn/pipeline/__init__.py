"""Uploaded scans to one record each, whichever way they arrive: S3 (via medfn.sources) or a folder.

    worker.py          one object: settled? fetch, analyse, write, record; poison vs transient
    analysis.py        the analysis step: bytes -> type from the signature -> the model's answer
    results.py         result JSON; fhir.py: FHIR R4 DiagnosticReport when asked
    storage.py         the storage protocol; s3_storage.py, folder_storage.py
    status.py          the status-record protocol; dynamo_status.py, sqlite_status.py
    folder_watch.py    `medfn watch`: a folder polled for arrivals, through the same worker
    upload_slots.py    presigned S3 PUT URLs (`POST /v1/uploads`) for scans too big to post
    settings.py        environment variables; failures.py: how failures are sorted
    types.py           what passes between them: ObjectRef, Announced, StatusRecord, BatchSummary

Nothing here is imported by the HTTP path, and boto3, Powertools and fhir.resources are
imported only inside the functions that use them. Import from the modules: this package
imports nothing itself, so an event source's key checks load only `types`.
"""

__all__: list[str] = []
