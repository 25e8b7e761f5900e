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
imported only inside the functions that use them. The names below load their module on
first use (PEP 562), so importing this package costs nothing at cold start.
"""

from medfn import _lazy_names

# Public name -> the module that defines it, imported when the name is first used.
_HOMES = {
    "Analysis": "analysis",
    "Announced": "types",
    "BatchSummary": "types",
    "DynamoStatusTable": "dynamo_status",
    "FolderStorage": "folder_storage",
    "FolderWatch": "folder_watch",
    "ObjectRef": "types",
    "PipelineSettings": "settings",
    "S3Storage": "s3_storage",
    "ScanWorker": "worker",
    "SqliteStatusTable": "sqlite_status",
    "StatusRecord": "types",
    "UploadTargets": "upload_slots",
    "analyse": "analysis",
    "presign_upload": "upload_slots",
}
__all__ = sorted(_HOMES)

__getattr__ = _lazy_names(__name__, _HOMES)
